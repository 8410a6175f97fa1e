"""What the dashboard's overview shows over a window (the last hour or day): per queue the
jobs finished and the wait and run time p95, and a series of points for its charts.

A percentile cannot be averaged from per-minute percentiles, so this reads the raw
per-minute rows and merges their histograms over each point and over the whole window.
"""

from __future__ import annotations

import msgspec

from offload.admin.metrics import REQUESTS_QUEUE, minute_range, percentile_ms
from offload.backends.base import CountsQuery
from offload.errors import InvalidQuery
from offload.ops import Op
from offload.records import MinuteCounts

#: The windows offered, with the minutes each chart point covers.
SPANS: dict[str, tuple[int, int]] = {"hour": (60, 1), "day": (24 * 60, 15)}


class Totals(msgspec.Struct, kw_only=True):
    """Jobs started, succeeded, retried and dead, with merged duration histograms."""

    started: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    wait_hist: list[int] = msgspec.field(default_factory=list)
    run_hist: list[int] = msgspec.field(default_factory=list)

    def add(self, row: MinuteCounts) -> None:
        self.started += row.started
        self.succeeded += row.succeeded
        self.retried += row.retried
        self.dead += row.dead
        _merge_into(self.wait_hist, row.wait_ms)
        _merge_into(self.run_hist, row.run_ms)

    def wait_p95_ms(self) -> float | None:
        return percentile_ms(self.wait_hist, 95)

    def run_p95_ms(self) -> float | None:
        return percentile_ms(self.run_hist, 95)


class Point(msgspec.Struct, frozen=True, kw_only=True):
    """One chart point: its start, jobs finished and failed a minute, p95s in ms."""

    at_s: float
    finished_per_min: float
    failed_per_min: float
    wait_p95_ms: float | None
    run_p95_ms: float | None


class Activity(msgspec.Struct, frozen=True, kw_only=True):
    span: str
    minutes: int
    by_queue: dict[str, Totals]
    points: list[Point]


def _merge_into(into: list[int], more: list[int]) -> None:
    """Add ``more`` to ``into`` in place: a day's activity merges tens of thousands of rows."""
    if len(more) > len(into):
        into.extend([0] * (len(more) - len(into)))
    for i, n in enumerate(more):
        if n:
            into[i] += n


def _finite(value: float | None) -> float | None:
    """Past the last bucket reads as infinity: a chart and JSON need a number."""
    return None if value is None or value == float("inf") else value


def activity(span: str, queue: str | None = None) -> Op[Activity]:
    if span not in SPANS:
        raise InvalidQuery(f"unknown span {span!r}: use one of {', '.join(SPANS)}")
    minutes, step = SPANS[span]
    now_s: float = yield ("now", None)
    first, last = yield from minute_range(now_s - minutes * 60, now_s)
    rows: list[MinuteCounts] = yield (
        "read_counts", CountsQuery(since_minute=first, until_minute=last, queue=queue))  # fmt: skip
    by_queue: dict[str, Totals] = {}
    buckets: dict[int, Totals] = {}
    start = first - first % step
    for row in rows:
        if row.queue == REQUESTS_QUEUE:
            continue
        by_queue.setdefault(row.queue, Totals()).add(row)
        buckets.setdefault((row.minute - start) // step, Totals()).add(row)
    points = []
    for index in range((last - start) // step + 1):
        got = buckets.get(index, Totals())
        points.append(Point(
            at_s=(start + index * step) * 60.0,
            finished_per_min=(got.succeeded + got.dead) / step,
            failed_per_min=got.dead / step,
            wait_p95_ms=_finite(got.wait_p95_ms()),
            run_p95_ms=_finite(got.run_p95_ms()),
        ))  # fmt: skip
    return Activity(span=span, minutes=minutes, by_queue=by_queue, points=points)
