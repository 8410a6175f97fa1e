"""The accepted range of every number a caller gives (delays, times, durations, priorities),
and of the names that filters find jobs by again (queues, owners).

A NaN, an infinity or an absurdly large value is refused where it is written, with
the range it must fall in, rather than half-stored (Redis), raised as a driver error
(SQLite, PostgreSQL) or overflowing a timestamp in a worker much later.
"""

from __future__ import annotations

import math
from typing import Any

from offload.errors import ConfigurationError

#: The longest delay: a century. ``now + delay`` then stays a valid timestamp everywhere.
MAX_DELAY_S = 100 * 366 * 86400.0
#: The latest ``run_at``: 9999-12-28 UTC, a few days inside Python's datetime (a window may
#: move a job to its next opening).
MAX_TIMESTAMP_S = 253_402_041_599.0
#: The longest timeout or lease: 30 days (a longer job reports progress or is split).
MAX_DURATION_S = 30 * 86400.0
#: Priorities stay within +-1,000,000: Redis orders ready jobs by priority * 2**32 + time,
#: exact in a double only while |priority| < 2**20.
MAX_PRIORITY = 1_000_000
#: Retries stay well inside a 32-bit column.
MAX_RETRIES = 1_000_000


def _exact(bound: float) -> str:
    """A bound as written, never rounded (253402300799 must not read as 2.53402e+11)."""
    return f"{int(bound):,}" if bound == int(bound) else f"{bound:,}"


def seconds(label: str, value: Any, *, low: float, high: float, low_open: bool = False) -> float:
    """``value`` as a float in ``[low, high]`` (``(low, high]`` when ``low_open``), or a
    ``ConfigurationError`` that names the range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{label} must be a number of seconds, got {value!r}")
    number = float(value)
    below = number <= low if low_open else number < low
    if not math.isfinite(number) or below or number > high:
        bracket = "(" if low_open else "["
        raise ConfigurationError(
            f"{label} must be a finite number in {bracket}{_exact(low)}, {_exact(high)}], "
            f"got {value!r}"
        )
    return number


def delay_s(value: Any, label: str = "delay") -> float:
    return seconds(label, value, low=0.0, high=MAX_DELAY_S)


def timestamp_s(value: Any, label: str = "run_at") -> float:
    return seconds(label, value, low=0.0, high=MAX_TIMESTAMP_S)


def duration_s(value: Any, label: str) -> float:
    return seconds(label, value, low=0.0, high=MAX_DURATION_S, low_open=True)


def priority(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_PRIORITY:
        raise ConfigurationError(
            f"priority must be an int in [-{MAX_PRIORITY}, {MAX_PRIORITY}], got {value!r}"
        )
    return value


def retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
        raise ConfigurationError(f"retries must be an int in [0, {MAX_RETRIES}], got {value!r}")
    return value


def check_owner(owner: str) -> str:
    """An owner every store can keep and every filter can name again."""
    if (
        not isinstance(owner, str) or not owner or len(owner) > 200 or not owner.isprintable()
    ):  # fmt: skip
        raise ConfigurationError(
            f"owner must be a short printable non-empty string (a user or tenant id), got "
            f"{owner!r:.80}"
        )
    return owner


def check_queue_name(queue: str) -> str:
    if not isinstance(queue, str) or not queue or len(queue) > 200 or not queue.isprintable():
        raise ConfigurationError(f"queue must be a short printable non-empty string, got {queue!r}")
    return queue
