"""Per-minute counts for charts and metrics: every source's rows summed, percentiles read
from the merged histograms (each percentile is its bucket's upper bound, in ms)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec

from offload.admin.filters import checked_name, time_s
from offload.backends.base import CountsQuery
from offload.errors import InvalidQuery
from offload.ops import Op
from offload.records import DURATION_BUCKETS_MS, MinuteCounts

#: The most minutes one read may cover (a week), so a chart cannot ask for a year of rows.
MAX_MINUTES = 7 * 24 * 60
PERCENTILES = (50, 95, 99)
#: The reserved queue of the HTTP requests timed by ``offload.requests`` (the app's name as
#: the task): these rows are not jobs, and every reader of job counts leaves them out.
REQUESTS_QUEUE = "offload.http"


class MinuteStats(msgspec.Struct, frozen=True, kw_only=True):
    minute_s: float  # start of the minute, seconds since the epoch
    queue: str
    task: str
    enqueued: int = 0
    started: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    #: percentile -> milliseconds (the bucket's upper bound); absent with no samples.
    wait_ms: dict[int, float] = msgspec.field(default_factory=dict)
    run_ms: dict[int, float] = msgspec.field(default_factory=dict)


def percentile_ms(histogram: list[int], p: float) -> float | None:
    total = sum(histogram)
    if total == 0:
        return None
    wanted = math.ceil(total * p / 100)
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= wanted:
            bounds = DURATION_BUCKETS_MS
            return float(bounds[index]) if index < len(bounds) else math.inf
    return math.inf


def _merge(into: list[int], more: list[int]) -> list[int]:
    size = max(len(into), len(more))
    return [
        (into[i] if i < len(into) else 0) + (more[i] if i < len(more) else 0) for i in range(size)
    ]


def summarize(rows: Iterable[MinuteCounts]) -> list[MinuteStats]:
    merged: dict[tuple[int, str, str], MinuteCounts] = {}
    for row in rows:
        key = (row.minute, row.queue, row.task)
        have = merged.get(key)
        if have is None:
            merged[key] = row
            continue
        merged[key] = msgspec.structs.replace(
            have,
            enqueued=have.enqueued + row.enqueued,
            started=have.started + row.started,
            succeeded=have.succeeded + row.succeeded,
            retried=have.retried + row.retried,
            dead=have.dead + row.dead,
            wait_ms=_merge(have.wait_ms, row.wait_ms),
            run_ms=_merge(have.run_ms, row.run_ms),
        )
    out = []
    for (minute, queue, task), row in sorted(merged.items()):
        waits = {p: v for p in PERCENTILES if (v := percentile_ms(row.wait_ms, p)) is not None}
        runs = {p: v for p in PERCENTILES if (v := percentile_ms(row.run_ms, p)) is not None}
        out.append(
            MinuteStats(
                minute_s=minute * 60.0,
                queue=queue,
                task=task,
                enqueued=row.enqueued,
                started=row.started,
                succeeded=row.succeeded,
                retried=row.retried,
                dead=row.dead,
                wait_ms=waits,
                run_ms=runs,
            )
        )
    return out


def minute_range(since_s: float, until_s: float | None) -> Op[tuple[int, int]]:
    """The first and last minute from ``since_s`` to ``until_s`` (default: now), checked."""
    since_s = time_s("since", since_s)
    if until_s is None:
        until_s = yield ("now", None)
    until_s = time_s("until", until_s)
    first, last = int(since_s // 60), int(until_s // 60)
    if last < first:
        raise InvalidQuery("since must come before until")
    if last - first > MAX_MINUTES:
        raise InvalidQuery(f"ask for at most {MAX_MINUTES} minutes (a week) at a time")
    return first, last


def counts(since_s: float, until_s: float | None, queue: str | None,
           task: str | None) -> Op[list[MinuteStats]]:  # fmt: skip
    """Minutes from ``since_s`` to ``until_s`` (default: now), summed over sources; the timed
    HTTP requests' rows are left out (they are not jobs)."""
    if queue is not None:
        checked_name("queue", queue)
    if task is not None:
        checked_name("task", task)
    first, last = yield from minute_range(since_s, until_s)
    query = CountsQuery(since_minute=first, until_minute=last, queue=queue, task=task)
    rows: list[MinuteCounts] = yield ("read_counts", query)
    return summarize(r for r in rows if r.queue != REQUESTS_QUEUE)
