"""The in-memory store's management operations: reads, a person's actions, marks, locks.

They share the store's state and lock (``MemoryStore`` inherits them); a person's
cancel ends a job like any other path does, through the store's ``_ended``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from offload.backends.base import (
    BatchQueryParams,
    CountParams,
    CountsParams,
    CountsQuery,
    IdsParams,
    LockParams,
    MarkNamesParams,
    MarkParams,
    Page,
    PublishParams,
    PurgeParams,
    QueryParams,
    QueueStats,
    WorkerBeatParams,
)
from offload.backends.event_wire import job_event
from offload.backends.memory_endings import Counts, Endings
from offload.backends.memory_log import EventLog, WorkerRegistry
from offload.backends.memory_views import (
    Marks,
    end_attempt,
    matches_filter,
    query_page,
    queue_stats,
)
from offload.backends.store import Notifier
from offload.backends.values import check_span
from offload.records import (
    AttemptOutcome,
    BatchRecord,
    EventKind,
    JobEvent,
    JobRecord,
    MinuteCounts,
    WorkerInfo,
)
from offload.states import CANCELLABLE_STATES, KEY_HOLDING_STATES, RETRYABLE_STATES, JobState


def copy_job(record: JobRecord) -> JobRecord:
    return msgspec.structs.replace(record)


class MemoryManagement:
    _clock: Callable[[], float]
    _lock: threading.RLock
    _jobs: dict[str, JobRecord]
    _keys: dict[str, str]
    _locks: dict[str, tuple[str, float]]
    _marks: Marks
    _notifier: Notifier
    _events: EventLog
    _workers: WorkerRegistry
    _endings: Endings
    _counts: Counts

    if TYPE_CHECKING:

        def _ended(self, job: JobRecord, now: float, events: list[JobEvent]) -> None: ...

        def _forget(self, job_id: str) -> None: ...

    def get(self, params: IdsParams) -> list[JobRecord]:
        with self._lock:
            return [copy_job(self._jobs[i]) for i in params.ids if i in self._jobs]

    def query(self, params: QueryParams) -> Page:
        with self._lock:
            return query_page(self._jobs.values(), params)

    def cancel(self, params: IdsParams) -> list[JobRecord]:
        out = []
        with self._lock:
            now = self._clock()
            events = []
            for job_id in params.ids:
                job = self._jobs.get(job_id)
                if job is None:
                    continue
                if job.state in CANCELLABLE_STATES:
                    if job.state is JobState.RUNNING:
                        end_attempt(job, AttemptOutcome.CANCELLED, now)
                    job.state = JobState.CANCELLED
                    job.finished_at = now
                    job.lease_until = None
                    events.append(job_event(EventKind.CANCELLED, job, now))
                    self._ended(job, now, events)
                out.append(copy_job(job))
            self._events.append(events, now)
        self._notifier.notify()
        return out

    def retry(self, params: IdsParams) -> list[JobRecord]:
        out = []
        with self._lock:
            now = self._clock()
            events = []
            for job_id in params.ids:
                job = self._jobs.get(job_id)
                if job is None:
                    continue
                if job.state in RETRYABLE_STATES and not self._key_taken(job):
                    self._endings.reopened(job)
                    job.state = JobState.QUEUED
                    job.attempt = 0
                    job.crashes = 0
                    job.run_at = now
                    job.finished_at = None
                    job.worker = None
                    if job.key is not None:
                        self._keys[job.key] = job.id
                    events.append(job_event(EventKind.ENQUEUED, job, now))
                out.append(copy_job(job))
            self._events.append(events, now)
        self._notifier.notify()
        return out

    def _key_taken(self, job: JobRecord) -> bool:
        if job.key is None:
            return False
        holder = self._jobs.get(self._keys.get(job.key, ""))
        return holder is not None and holder.id != job.id and holder.state in KEY_HOLDING_STATES

    def stats(self) -> list[QueueStats]:
        with self._lock:
            return queue_stats(self._jobs.values(), self._clock())

    def purge(self, params: PurgeParams) -> int:
        with self._lock:
            doomed = [
                j.id
                for j in self._jobs.values()
                if j.state in params.states and (params.queue is None or j.queue == params.queue)
            ]
            for job_id in doomed:
                self._forget(job_id)
            return len(doomed)

    def count(self, params: CountParams) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if matches_filter(j, params.filter))

    def delete(self, params: IdsParams) -> list[str]:
        with self._lock:
            now = self._clock()
            gone = []
            events = []
            for job_id in dict.fromkeys(params.ids):
                job = self._jobs.get(job_id)
                if job is None or job.state is JobState.RUNNING:
                    continue
                events.append(job_event(EventKind.DELETED, job, now))
                if not job.state.is_terminal:  # it will never end: its batch stops waiting
                    self._ended(job, now, events)
                self._forget(job_id)
                gone.append(job_id)
            self._events.append(events, now)
        self._notifier.notify()
        return gone

    def publish(self, params: PublishParams) -> None:
        with self._lock:
            self._events.append(params.events, self._clock())
        self._notifier.notify()

    def beat_worker(self, params: WorkerBeatParams) -> None:
        check_span(params.worker.id, "worker ttl_s", params.ttl_s)
        with self._lock:
            self._workers.beat(params.worker, params.ttl_s, self._clock())

    def remove_worker(self, params: IdsParams) -> None:
        with self._lock:
            self._workers.remove(params.ids)

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            return self._workers.live(self._clock())

    def lock(self, params: LockParams) -> bool:
        with self._lock:
            now = self._clock()
            holder = self._locks.get(params.name)
            if holder is not None and holder[0] != params.owner and holder[1] > now:
                return False
            self._locks[params.name] = (params.owner, now + params.ttl_s)
            return True

    def unlock(self, params: LockParams) -> None:
        with self._lock:
            holder = self._locks.get(params.name)
            if holder is not None and holder[0] == params.owner:
                del self._locks[params.name]

    def get_marks(self, params: MarkNamesParams) -> dict[str, str]:
        with self._lock:
            return self._marks.get(params.names, self._clock())

    def set_mark(self, params: MarkParams) -> bool:
        check_span(params.name, "mark ttl_s", params.ttl_s)
        with self._lock:
            return self._marks.set(params, self._clock())

    def batches(self, params: BatchQueryParams) -> list[BatchRecord]:
        with self._lock:
            return self._endings.batches(params.ids, params.open_only, params.limit)

    def record_counts(self, params: CountsParams) -> None:
        check_span("counts", "counts ttl_s", params.ttl_s)
        with self._lock:
            self._counts.record(params.rows, params.ttl_s, self._clock())

    def read_counts(self, params: CountsQuery) -> list[MinuteCounts]:
        with self._lock:
            return self._counts.read(params.since_minute, params.until_minute, params.queue,
                                     params.task, self._clock())  # fmt: skip
