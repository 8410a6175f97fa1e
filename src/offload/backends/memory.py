"""An in-process store for tests and examples: same semantics, nothing on disk."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import msgspec

from offload.backends.base import (
    Capabilities,
    ClaimParams,
    DuplicateJob,
    EnqueueParams,
    FinishParams,
    FinishResult,
    HeartbeatParams,
    HeartbeatResult,
    ProgressParams,
    PruneParams,
    ReapedJob,
    ReapParams,
)
from offload.backends.event_wire import job_event
from offload.backends.memory_endings import Counts, Endings
from offload.backends.memory_log import EventLog, WorkerRegistry
from offload.backends.memory_manage import MemoryManagement, copy_job
from offload.backends.memory_views import (
    Marks,
    apply_outcome,
    end_attempt,
    fair_head,
    next_ready,
)
from offload.backends.store import Notifier, ThreadedBackend
from offload.backends.values import (
    check_new_jobs,
    check_outcomes,
    finite_progress,
)
from offload.records import (
    ENQUEUE_COUNTS_TTL_S,
    FAIR_STEP_S,
    WORKER_LOST,
    AttemptOutcome,
    EventKind,
    JobEvent,
    JobRecord,
    NewJob,
)
from offload.states import (
    KEY_HOLDING_STATES,
    JobState,
)

_READY = (JobState.QUEUED, JobState.SCHEDULED)
#: Events whose message is the job's error.
_FAILED = (EventKind.RETRYING, EventKind.DEAD)


class MemoryStore(MemoryManagement):
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
        self._endings = Endings()
        self._counts = Counts()

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
            stored = []
            for new in params.jobs:
                record = self._store_new(new, now, heads)
                if record.id == new.id:
                    stored.append(record)
                    events.append(job_event(EventKind.ENQUEUED, record, now))
                out.append(copy_job(record))
            if params.batch is not None:
                members = sum(1 for r in stored if r.batch == params.batch.id)
                self._endings.open_batch(params.batch, members, now)
            self._counts.add_enqueued(stored, now, ENQUEUE_COUNTS_TTL_S)
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
        self._endings.remember(new)
        return record

    def _ended(self, job: JobRecord, now: float, events: list[JobEvent]) -> None:
        """``job`` just became final (any path): store what that sets off, in this step."""
        due, batch_events = self._endings.ended(job, now)
        events.extend(batch_events)
        for new in due:
            if new.id not in self._jobs:
                events.append(job_event(EventKind.ENQUEUED, self._store_new(new, now, None), now))

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

    def _forget(self, job_id: str) -> None:
        job = self._jobs.pop(job_id)
        if job.key is not None and self._keys.get(job.key) == job_id:
            del self._keys[job.key]
        self._endings.forget(job_id)

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
                out.append(copy_job(job))
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
                if job.state.is_terminal:
                    self._ended(job, now, events)
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
            for job in list(self._jobs.values()):
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
                if kind is EventKind.DEAD:
                    self._ended(job, now, events)
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
            self._endings.prune(params.finished_before)
            self._counts.prune(now, params.counts_before)
            return len(doomed)

    # -- wake-ups ----------------------------------------------------------
    def next_ready_at(self, queues: Sequence[str]) -> float | None:
        with self._lock:
            return next_ready(self._jobs.values(), queues)

    def change_marker(self) -> object:
        return None

    def last_event_seq(self) -> int:
        with self._lock:
            return self._events.last_seq()

    def listen(self, ttl_s: float) -> int:
        return self.last_event_seq()  # an in-process log: every event is kept anyway

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
