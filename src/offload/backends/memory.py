"""An in-process store for tests and examples: same semantics, nothing on disk."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import msgspec

from offload.backends.base import (
    Capabilities,
    ClaimParams,
    CountParams,
    DuplicateJob,
    EnqueueParams,
    FinishParams,
    FinishResult,
    HeartbeatParams,
    HeartbeatResult,
    IdsParams,
    LockParams,
    MarkNamesParams,
    MarkParams,
    Page,
    ProgressParams,
    PruneParams,
    PublishParams,
    PurgeParams,
    QueryParams,
    QueueStats,
    ReapedJob,
    ReapParams,
    WorkerBeatParams,
)
from offload.backends.event_wire import job_event
from offload.backends.memory_log import EventLog, WorkerRegistry
from offload.backends.memory_views import (
    Marks,
    apply_outcome,
    end_attempt,
    fair_head,
    matches_filter,
    next_ready,
    query_page,
    queue_stats,
)
from offload.backends.store import Notifier, ThreadedBackend
from offload.backends.values import (
    check_new_jobs,
    check_outcomes,
    check_span,
    finite_progress,
)
from offload.records import (
    FAIR_STEP_S,
    WORKER_LOST,
    AttemptOutcome,
    EventKind,
    JobEvent,
    JobRecord,
    NewJob,
    WorkerInfo,
)
from offload.states import (
    CANCELLABLE_STATES,
    KEY_HOLDING_STATES,
    RETRYABLE_STATES,
    JobState,
)

_READY = (JobState.QUEUED, JobState.SCHEDULED)
#: Events whose message is the job's error.
_FAILED = (EventKind.RETRYING, EventKind.DEAD)


def _copy(record: JobRecord) -> JobRecord:
    return msgspec.structs.replace(record)


class MemoryStore:
    capabilities = Capabilities(push_wakeups=True, shared_between_processes=False)
    blocks = False

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._jobs: dict[str, JobRecord] = {}
        self._keys: dict[str, str] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._marks = Marks()
        self._turns: dict[tuple[str, str], float] = {}  # (queue, owner or '') -> last turn
        self._notifier = Notifier()
        self._events = EventLog()
        self._workers = WorkerRegistry()

    def now(self) -> float:
        return self._clock()

    def migrate(self) -> int:
        return 0  # nothing persists, nothing to migrate

    # -- client operations -------------------------------------------------
    def enqueue(self, params: EnqueueParams) -> list[JobRecord]:
        check_new_jobs(params.jobs)
        out: list[JobRecord] = []
        with self._lock:
            now = self._clock()
            ids = [new.id for new in params.jobs]
            if len(set(ids)) != len(ids) or any(i in self._jobs for i in ids):
                raise DuplicateJob()
            # (queue, priority) -> run_at of the first ready job, read once: only for fair jobs
            heads: dict[tuple[str, int], float] | None = (
                {} if any(new.fair for new in params.jobs) else None
            )
            events = []
            for new in params.jobs:
                record = self._store_new(new, now, heads)
                if record.id == new.id:
                    events.append(job_event(EventKind.ENQUEUED, record, now))
                out.append(_copy(record))
            self._events.append(events, now)
        self._notifier.notify()
        return out

    def _store_new(
        self, new: NewJob, now: float, heads: dict[tuple[str, int], float] | None
    ) -> JobRecord:
        """Store one new job, or return the live job that holds its unique key."""
        if new.key is not None:
            holder = self._jobs.get(self._keys.get(new.key, ""))
            if holder is not None and holder.state in KEY_HOLDING_STATES:
                return holder
        run_at = new.run_at if new.run_at is not None else now + new.delay_s
        if heads is not None and run_at <= now:
            if new.fair:
                run_at = self._take_turn(new, now, heads)
            elif (new.queue, new.priority) in heads:  # a new head, for later fair jobs
                group = (new.queue, new.priority)
                heads[group] = min(heads[group], run_at)
        record = JobRecord(
            id=new.id,
            task=new.task,
            queue=new.queue,
            state=JobState.SCHEDULED if run_at > now else JobState.QUEUED,
            payload=new.payload,
            priority=new.priority,
            max_attempts=new.max_attempts,
            run_at=run_at,
            lease_s=new.lease_s,
            timeout_s=new.timeout_s,
            created_at=now,
            key=new.key,
            batch=new.batch,
            owner=new.owner,
            meta=dict(new.meta),
        )
        self._jobs[record.id] = record
        if new.key is not None:
            self._keys[new.key] = record.id
        return record

    def _take_turn(self, new: NewJob, now: float, heads: dict[tuple[str, int], float]) -> float:
        """The owner's next turn: right behind the head of its priority, after its last turn."""
        group = (new.queue, new.priority)
        head = heads.get(group)
        if head is None:
            head = heads[group] = fair_head(self._jobs.values(), new.queue, new.priority, now)
        tenant = (new.queue, new.owner or "")
        last = self._turns.get(tenant)
        turn = head if last is None else max(head, last + FAIR_STEP_S)
        self._turns[tenant] = turn
        return turn

    def get(self, params: IdsParams) -> list[JobRecord]:
        with self._lock:
            return [_copy(self._jobs[i]) for i in params.ids if i in self._jobs]

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
                out.append(_copy(job))
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
                    job.state = JobState.QUEUED
                    job.attempt = 0
                    job.crashes = 0
                    job.run_at = now
                    job.finished_at = None
                    job.worker = None
                    if job.key is not None:
                        self._keys[job.key] = job.id
                    events.append(job_event(EventKind.ENQUEUED, job, now))
                out.append(_copy(job))
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

    def _forget(self, job_id: str) -> None:
        job = self._jobs.pop(job_id)
        if job.key is not None and self._keys.get(job.key) == job_id:
            del self._keys[job.key]

    # -- worker operations -------------------------------------------------
    def claim(self, params: ClaimParams) -> list[JobRecord]:
        with self._lock:
            now = self._clock()
            ready = [
                j
                for j in self._jobs.values()
                if j.state in _READY and j.run_at <= now and j.queue in params.queues
            ]
            ready.sort(key=lambda j: (-j.priority, j.run_at, j.id))
            out = []
            for job in ready[: params.limit]:
                job.state = JobState.RUNNING
                job.attempt += 1
                job.delivery += 1
                job.worker = params.worker
                job.lease_until = now + (job.lease_s or params.lease_s)
                job.started_at = now
                out.append(_copy(job))
            self._events.append([job_event(EventKind.STARTED, j, now) for j in out], now)
        if out:
            self._notifier.notify()
        return out

    def _held(self, job_id: str, delivery: int) -> JobRecord | None:
        job = self._jobs.get(job_id)
        if job is None or job.state is not JobState.RUNNING or job.delivery != delivery:
            return None
        return job

    def heartbeat(self, params: HeartbeatParams) -> HeartbeatResult:
        lost = []
        with self._lock:
            now = self._clock()
            for lease in params.leases:
                job = self._held(lease.id, lease.delivery)
                if job is None:
                    lost.append(lease.id)
                else:
                    job.lease_until = now + (job.lease_s or params.lease_s)
        return HeartbeatResult(lost=lost)

    def finish(self, params: FinishParams) -> FinishResult:
        check_outcomes(params.outcomes)
        rejected = []
        with self._lock:
            now = self._clock()
            events: list[JobEvent] = []
            for outcome in params.outcomes:
                job = self._held(outcome.id, outcome.delivery)
                if job is None:
                    rejected.append(outcome.id)
                    continue
                worker = job.worker
                kind = apply_outcome(job, outcome, now)
                message = job.error.message if kind in _FAILED and job.error else None
                event = job_event(kind, job, now, message=message)
                events.append(msgspec.structs.replace(event, worker=worker))
                for new in outcome.follow_ups:  # with the finish, and only when it is taken
                    if new.id not in self._jobs:
                        followup = self._store_new(new, now, None)
                        events.append(job_event(EventKind.ENQUEUED, followup, now))
            self._events.append(events, now)
        self._notifier.notify()
        return FinishResult(rejected=rejected)

    def report_progress(self, params: ProgressParams) -> None:
        with self._lock:
            now = self._clock()
            events = []
            for update in params.updates:
                job = self._held(update.id, update.delivery)
                if job is not None and finite_progress(update.progress):
                    job.progress = update.progress
                    job.progress_message = update.message
                    events.append(job_event(EventKind.PROGRESS, job, now))
            self._events.append(events, now)
        if events:
            self._notifier.notify()

    # -- maintenance -------------------------------------------------------
    def promote_due(self) -> int:
        with self._lock:
            now = self._clock()
            due = [
                j for j in self._jobs.values() if j.state is JobState.SCHEDULED and j.run_at <= now
            ]
            for job in due:
                job.state = JobState.QUEUED
            return len(due)

    def reap_expired(self, params: ReapParams) -> list[ReapedJob]:
        out = []
        with self._lock:
            now = self._clock()
            events = []
            for job in self._jobs.values():
                if job.state is not JobState.RUNNING or (job.lease_until or 0) >= now:
                    continue
                end_attempt(job, AttemptOutcome.LOST, now, WORKER_LOST)
                job.crashes += 1
                job.lease_until = None
                job.worker = None
                job.error = WORKER_LOST
                if job.crashes >= params.max_crashes:
                    job.state = JobState.DEAD
                    job.finished_at = now
                    kind = EventKind.DEAD
                else:
                    job.state = JobState.QUEUED
                    kind = EventKind.REQUEUED
                events.append(job_event(kind, job, now, message=WORKER_LOST.message))
                out.append(ReapedJob(id=job.id, state=job.state))
            self._events.append(events, now)
        if out:
            self._notifier.notify()
        return out

    def prune(self, params: PruneParams) -> int:
        with self._lock:
            doomed = [
                j.id
                for j in self._jobs.values()
                if j.state in params.states
                and j.finished_at is not None
                and j.finished_at < params.finished_before
            ]
            for job_id in doomed:
                self._forget(job_id)
            old = [t for t, turn in self._turns.items() if turn < params.finished_before]
            for tenant in old:
                del self._turns[tenant]
            now = self._clock()
            self._marks.prune(now)
            self._events.prune(now)
            self._workers.prune(now)
            return len(doomed)

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

    # -- wake-ups ----------------------------------------------------------
    def next_ready_at(self, queues: Sequence[str]) -> float | None:
        with self._lock:
            return next_ready(self._jobs.values(), queues)

    def change_marker(self) -> object:
        return None

    def last_event_seq(self) -> int:
        with self._lock:
            return self._events.last_seq()

    def read_events(self, after_seq: int, limit: int) -> list[tuple[int, list[JobEvent]]]:
        with self._lock:
            return self._events.read(after_seq, limit)

    def changed_file(self) -> str | None:
        return None

    def add_listener(self, callback: Callable[[], None]) -> None:
        self._notifier.add(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        self._notifier.remove(callback)

    def close(self) -> None:
        pass


def memory_backend(url: str, clock: Callable[[], float] | None = None) -> ThreadedBackend:
    """``memory://``: one store per call, so each ``Offload`` instance gets its own."""
    return ThreadedBackend(MemoryStore(clock=clock or time.time))
