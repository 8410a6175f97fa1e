"""Tally: this worker's per-minute counts by queue and task, written to the store.

The worker is the source of its rows: it keeps each recent minute's totals and writes
them whole (each write replaces its earlier row), so a write lost to an outage is
simply made again by the next. Starts are counted when a job starts, with its wait
(due to started); ends when the worker decides them, with their run time.
"""

from __future__ import annotations

import bisect
import logging
from bisect import bisect_left as _bisect
from dataclasses import dataclass, field

from offload.backends.base import Backend, BackendError, CountsParams, OutcomeKind
from offload.records import DURATION_BUCKETS_MS, JobRecord, MinuteCounts

log = logging.getLogger("offload.worker")

#: Minutes kept in memory after their last change (a late end still lands in its minute).
KEEP_MINUTES = 3
FLUSH_INTERVAL_S = 10.0


@dataclass(slots=True)
class _Row:
    dirty: bool = True
    started: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    wait_ms: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS_MS) + 1))
    run_ms: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS_MS) + 1))


def bucket(duration_s: float) -> int:
    """The histogram bucket of a duration (the last one holds everything above)."""
    return bisect.bisect_left(DURATION_BUCKETS_MS, max(duration_s, 0.0) * 1000.0)


class Tally:
    def __init__(self, source: str, retention_s: float) -> None:
        self.source = source
        self.retention_s = retention_s
        self._rows: dict[tuple[int, str, str], _Row] = {}

    def _row(self, job: JobRecord, now_s: float) -> _Row:
        key = (int(now_s // 60), job.queue, job.task)
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = _Row()
        row.dirty = True
        return row

    def started(self, job: JobRecord, now_s: float) -> None:
        row = self._row(job, now_s)
        row.started += 1
        row.wait_ms[_bisect(DURATION_BUCKETS_MS, (now_s - job.run_at) * 1000.0)] += 1

    def ended(self, job: JobRecord, kind: OutcomeKind, now_s: float) -> None:
        if kind not in (OutcomeKind.SUCCEEDED, OutcomeKind.RETRY, OutcomeKind.DEAD):
            return  # handed back or deferred: not an end
        row = self._row(job, now_s)
        if kind is OutcomeKind.SUCCEEDED:
            row.succeeded += 1
        elif kind is OutcomeKind.RETRY:
            row.retried += 1
        else:
            row.dead += 1
        if job.started_at is not None:
            row.run_ms[_bisect(DURATION_BUCKETS_MS, (now_s - job.started_at) * 1000.0)] += 1

    def pending(self) -> list[MinuteCounts]:
        """The rows changed since the last successful write."""
        return [
            MinuteCounts(
                minute=minute,
                queue=queue,
                task=task,
                source=self.source,
                started=r.started,
                succeeded=r.succeeded,
                retried=r.retried,
                dead=r.dead,
                wait_ms=list(r.wait_ms),
                run_ms=list(r.run_ms),
            )
            for (minute, queue, task), r in sorted(self._rows.items())
            if r.dirty
        ]

    async def flush(self, backend: Backend, now_s: float) -> None:
        rows = self.pending()
        if rows:
            written = [r for r in self._rows.values() if r.dirty]
            for row in written:  # a change while the write is out marks its row again
                row.dirty = False
            try:
                await backend.record_counts(CountsParams(rows=rows, ttl_s=self.retention_s))
            except BaseException as exc:
                for row in written:
                    row.dirty = True
                if not isinstance(exc, BackendError):
                    raise
                log.debug("cannot write per-minute counts (%s); next time", exc)
                return
        oldest = int(now_s // 60) - KEEP_MINUTES
        for key in [k for k in self._rows if k[0] < oldest]:
            del self._rows[key]
