"""What a job's end sets off in the in-memory store: its follow-ups and its batch's count.

The store calls ``ended`` in the step that makes a job final, whatever the path, and
stores what it returns in that same step: the reference for every store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from offload.records import (
    BatchOpen,
    BatchRecord,
    EventKind,
    FollowUp,
    JobEvent,
    JobRecord,
    MinuteCounts,
    NewJob,
)


class Endings:
    """Follow-ups waiting on their parents, and open batches counting their members down."""

    def __init__(self) -> None:
        self._follow_ups: dict[str, tuple[FollowUp, ...]] = {}
        self._batches: dict[str, BatchRecord] = {}
        self._callbacks: dict[str, NewJob] = {}

    def remember(self, new: NewJob) -> None:
        if new.follow_ups:
            self._follow_ups[new.id] = new.follow_ups

    def open_batch(self, batch: BatchOpen, members: int, now: float) -> None:
        self._batches[batch.id] = BatchRecord(
            id=batch.id,
            total=members,
            remaining=members,
            created_at=now,
            callback_id=None if batch.callback is None else batch.callback.id,
        )
        if batch.callback is not None:
            self._callbacks[batch.id] = batch.callback

    def ended(self, job: JobRecord, now: float) -> tuple[list[NewJob], list[JobEvent]]:
        """The jobs to store now that ``job`` is final, and its batch's progress event."""
        due = [f.job for f in self._follow_ups.get(job.id, ()) if job.state in f.on]
        events: list[JobEvent] = []
        batch = self._batches.get(job.batch or "")
        if batch is not None and batch.completed_at is None:
            remaining = batch.remaining - 1
            batch = msgspec.structs.replace(
                batch, remaining=remaining, completed_at=now if remaining <= 0 else None
            )
            self._batches[batch.id] = batch
            events.append(progress_event(batch, now))
            callback = self._callbacks.pop(batch.id, None) if remaining <= 0 else None
            if callback is not None:
                due.append(callback)
        return due, events

    def reopened(self, job: JobRecord) -> None:
        """A person queued a final member again: its open batch waits for it once more."""
        batch = self._batches.get(job.batch or "")
        if batch is not None and batch.completed_at is None:
            self._batches[batch.id] = msgspec.structs.replace(batch, remaining=batch.remaining + 1)

    def forget(self, job_id: str) -> None:
        self._follow_ups.pop(job_id, None)

    def batches(self, ids: Sequence[str], open_only: bool, limit: int) -> list[BatchRecord]:
        chosen: Iterable[BatchRecord] = (
            [self._batches[i] for i in ids if i in self._batches]
            if ids
            else sorted(self._batches.values(), key=lambda b: b.id, reverse=True)
        )
        return [b for b in chosen if not open_only or b.completed_at is None][:limit]

    def prune(self, completed_before: float) -> None:
        for batch_id in [
            b.id
            for b in self._batches.values()
            if b.completed_at is not None and b.completed_at < completed_before
        ]:
            del self._batches[batch_id]


def progress_event(batch: BatchRecord, now: float) -> JobEvent:
    done = batch.total - batch.remaining
    return JobEvent(
        kind=EventKind.BATCH_PROGRESS,
        batch=batch.id,
        progress=done / batch.total if batch.total else 1.0,
        message=f"{done} of {batch.total} done",
        at=now,
    )


class Counts:
    """Per-minute rows: a source's replace its own; the store's enqueue counts add up."""

    def __init__(self) -> None:
        self._rows: dict[tuple[int, str, str, str], tuple[MinuteCounts, float]] = {}

    def add_enqueued(self, jobs: Iterable[JobRecord], now: float, ttl_s: float) -> None:
        minute = int(now // 60)
        for job in jobs:
            key = (minute, job.queue, job.task, "enqueue")
            row = self._rows.get(key, (None, 0.0))[0]
            base = row or MinuteCounts(minute=minute, queue=job.queue, task=job.task,
                                       source="enqueue")  # fmt: skip
            self._rows[key] = (msgspec.structs.replace(base, enqueued=base.enqueued + 1),
                               now + ttl_s)  # fmt: skip

    def record(self, rows: Iterable[MinuteCounts], ttl_s: float, now: float) -> None:
        for row in rows:
            self._rows[(row.minute, row.queue, row.task, row.source)] = (row, now + ttl_s)

    def read(self, since: int, until: int, queue: str | None, task: str | None,
             now: float) -> list[MinuteCounts]:  # fmt: skip
        return [
            row
            for (minute, q, t, _), (row, end) in sorted(self._rows.items())
            if since <= minute <= until and end > now
            and (queue is None or q == queue) and (task is None or t == task)
        ]  # fmt: skip

    def prune(self, now: float, counts_before: float | None) -> None:
        oldest = -1 if counts_before is None else int(counts_before // 60)
        for key in [k for k, (_, end) in self._rows.items() if end <= now or k[0] < oldest]:
            del self._rows[key]
