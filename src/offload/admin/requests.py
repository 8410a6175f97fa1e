"""The HTTP requests timed by the ``offload.requests`` middlewares, read back for the
one-minute rule: how many requests each app served, how many took longer than its
threshold, and the slowest, whichever process or machine served them.

The middlewares write per-minute counts rows, one per process as a worker does, on the
reserved queue ``REQUESTS_QUEUE`` with the app's name as the task: ``started`` counts the
requests, ``dead`` those over the threshold, ``run_ms`` their durations. The counts'
retention, pruning and the leader's running totals then apply unchanged, on every store,
and the readers of job counts leave these rows out. The slowest request of a minute,
which no counts field can hold, is one mark per app and minute, raised by compare-and-set
by whichever process saw a slower one (a repeated write changes nothing).
"""

from __future__ import annotations

import math

import msgspec

from offload.admin.filters import checked_name
from offload.admin.metrics import PERCENTILES, REQUESTS_QUEUE, minute_range, percentile_ms
from offload.admin.totals import all_totals
from offload.backends.base import CountsQuery, MarkNamesParams
from offload.ops import Op
from offload.records import MinuteCounts

__all__ = ["REQUESTS_QUEUE", "RequestStats", "RequestTotal", "SlowRequest"]

#: get_marks is asked for this many names at a time (SQLite caps an IN list's values).
_MARKS_PER_READ = 500


class SlowRequest(msgspec.Struct, frozen=True, kw_only=True):
    duration_ms: float
    method: str
    #: The route's template where the framework names it (``/jobs/{job_id}``), else the
    #: path without its query.
    path: str
    at_s: float  # when it ended, on the store's clock
    threshold_s: float  # the middleware's threshold when it was timed


class RequestStats(msgspec.Struct, frozen=True, kw_only=True):
    """One app's requests over a span. Percentiles are their histogram bucket's upper bound
    (at most the slowest); ``max_ms`` is the slowest request's exact duration."""

    app: str
    requests: int = 0
    over_threshold: int = 0  # the figure the one-minute rule wants at 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    slowest: SlowRequest | None = None


class RequestTotal(msgspec.Struct, frozen=True, kw_only=True):
    """One app's running totals since counting began (for counters that only go up)."""

    app: str
    requests: int
    over_threshold: int
    #: Requests per bucket of ``DURATION_BUCKETS_MS`` (one more for above).
    duration_ms: list[int]


def slowest_mark(app: str, minute: int) -> str:
    return f"requests:slowest:{minute}:{app}"


def decode_slowest(raw: str | None) -> SlowRequest | None:
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw, type=SlowRequest)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # written by hand: the next slower request replaces it


def request_totals() -> Op[list[RequestTotal]]:
    found = yield from all_totals()
    return [
        RequestTotal(app=t.task, requests=t.started, over_threshold=t.dead, duration_ms=t.run_ms)
        for t in found
        if t.queue == REQUESTS_QUEUE
    ]


class _App:
    def __init__(self) -> None:
        self.requests = 0
        self.over = 0
        self.histogram: list[int] = []
        self.top = -1  # the highest bucket with a request: the slowest is in its minutes
        self.top_minutes: set[int] = set()

    def add(self, row: MinuteCounts) -> None:
        self.requests += row.started
        self.over += row.dead
        if len(self.histogram) < len(row.run_ms):
            self.histogram.extend([0] * (len(row.run_ms) - len(self.histogram)))
        for index, count in enumerate(row.run_ms):
            self.histogram[index] += count
        top = max((i for i, count in enumerate(row.run_ms) if count > 0), default=-1)
        if top > self.top:
            self.top, self.top_minutes = top, set()
        if top == self.top >= 0:
            self.top_minutes.add(row.minute)

    def stats(self, app: str, slowest: SlowRequest | None) -> RequestStats:
        top_ms = None if slowest is None else slowest.duration_ms
        shown: dict[int, float | None] = {}
        for p in PERCENTILES:
            bound = percentile_ms(self.histogram, p)
            if bound is not None and top_ms is not None:
                bound = min(bound, top_ms)
            shown[p] = None if bound is None or math.isinf(bound) else bound
        return RequestStats(
            app=app, requests=self.requests, over_threshold=self.over, p50_ms=shown[50],
            p95_ms=shown[95], p99_ms=shown[99], max_ms=top_ms, slowest=slowest,
        )  # fmt: skip


def request_stats(since_s: float, until_s: float | None, app: str | None) -> Op[list[RequestStats]]:
    """Each app's requests from ``since_s`` to ``until_s`` (default: now), by app name."""
    if app is not None:
        checked_name("app", app)
    first, last = yield from minute_range(since_s, until_s)
    query = CountsQuery(since_minute=first, until_minute=last, queue=REQUESTS_QUEUE, task=app)
    rows: list[MinuteCounts] = yield ("read_counts", query)
    apps: dict[str, _App] = {}
    for row in rows:
        if row.queue == REQUESTS_QUEUE and first <= row.minute <= last:
            apps.setdefault(row.task, _App()).add(row)
    names = [slowest_mark(name, m) for name, a in apps.items() for m in sorted(a.top_minutes)]
    found: dict[str, str] = {}
    for start in range(0, len(names), _MARKS_PER_READ):
        chunk = names[start : start + _MARKS_PER_READ]
        found.update((yield ("get_marks", MarkNamesParams(names=chunk))))
    out = []
    for name, tallied in sorted(apps.items()):
        seen = [decode_slowest(found.get(slowest_mark(name, m))) for m in tallied.top_minutes]
        slowest = max((s for s in seen if s is not None), key=lambda s: s.duration_ms,
                      default=None)  # fmt: skip
        out.append(tallied.stats(name, slowest))
    return out
