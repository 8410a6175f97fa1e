"""Idempotency keys: a client that sends the same request twice (a retry after a lost
answer) gets the first job back, not a second one, for a day.

The key is remembered as a mark per (owner, key) that expires, written with
compare-and-set so that the first request to finish wins. Two requests racing while
the job is live also meet on the job's own unique key (the caller passes
``live_key``), so they converge on one job even before either is remembered.
"""

from __future__ import annotations

import json

from offload.backends.base import MarkNamesParams, MarkParams
from offload.errors import ConfigurationError
from offload.ops import Op

#: How long a key is remembered.
IDEMPOTENCY_TTL_S = 24 * 3600.0


def check_key(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > 200 or not key.isprintable():
        raise ConfigurationError(
            "an idempotency key must be 1 to 200 printable characters (a UUID is ideal)"
        )
    return key


def _mark(owner: str | None, key: str) -> str:
    return "idempotency:" + json.dumps([owner, key])


def live_key(owner: str | None, key: str) -> str:
    """The unique job key two racing requests meet on (another owner's never matches)."""
    return "idempotency:" + json.dumps([owner, key])


def recall(owner: str | None, key: str) -> Op[str | None]:
    """The job id first stored under this key, if it is still remembered."""
    name = _mark(owner, check_key(key))
    marks: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[name]))
    return marks.get(name)


def remember(owner: str | None, key: str, job_id: str) -> Op[str]:
    """Remember ``job_id`` under the key; returns the id that was remembered first."""
    name = _mark(owner, check_key(key))
    params = MarkParams(name=name, value=job_id, expected=None, ttl_s=IDEMPOTENCY_TTL_S)
    if (yield ("set_mark", params)):
        return job_id
    marks: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[name]))
    return marks.get(name, job_id)
