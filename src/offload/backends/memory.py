"""An in-process store for tests and examples: same semantics, nothing on disk."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import msgspec

from offload.backends.base import (
    Capabilities,
    ClaimParams,
    EnqueueParams,
    FinishParams,
    FinishResult,
    HeartbeatParams,
    HeartbeatResult,
    IdsParams,
    LockParams,
    MarkNamesParams,
    MarkParams,
    OutcomeKind,
    Page,
    ProgressParams,
    PruneParams,
    PurgeParams,
    QueryParams,
    QueueStats,
    ReapedJob,
    ReapParams,
)
from offload.backends.store import Notifier, ThreadedBackend
from offload.records import FAIR_STEP_S, WORKER_LOST, JobRecord, NewJob
from offload.states import (
    CANCELLABLE_STATES,
    KEY_HOLDING_STATES,
    RETRYABLE_STATES,
    JobState,
)

_READY = (JobState.QUEUED, JobState.SCHEDULED)


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
        self._marks: dict[str, str] = {}
        self._turns: dict[tuple[str, str], float] = {}  # (queue, owner or '') -> last turn
        self._notifier = Notifier()

    def now(self) -> float:
        return self._clock()

    def migrate(self) -> int:
        return 0  # nothing persists, nothing to migrate

    # -- client operations -------------------------------------------------
    def enqueue(self, params: EnqueueParams) -> list[JobRecord]:
        out: list[JobRecord] = []
        with self._lock:
            now = self._clock()
            ids = [new.id for new in params.jobs]
            if len(set(ids)) != len(ids) or any(i in self._jobs for i in ids):
                raise ValueError("a job id in this batch already exists; nothing was stored")
            # (queue, priority) -> run_at of the first ready job, read once: only for fair jobs
            heads: dict[tuple[str, int], float] | None = (
                {} if any(new.fair for new in params.jobs) else None
            )
            for new in params.jobs:
                if new.key is not None:
                    holder = self._jobs.get(self._keys.get(new.key, ""))
                    if holder is not None and holder.state in KEY_HOLDING_STATES:
                        out.append(_copy(holder))
                        continue
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
                out.append(_copy(record))
        self._notifier.notify()
        return out

    def _take_turn(self, new: NewJob, now: float, heads: dict[tuple[str, int], float]) -> float:
        """The owner's next turn: right behind the head of its priority, after its last turn."""
        group = (new.queue, new.priority)
        head = heads.get(group)
        if head is None:
            head = min(
                (
                    j.run_at
                    for j in self._jobs.values()
                    if j.queue == new.queue
                    and j.priority == new.priority
                    and j.state in _READY
                    and j.run_at <= now
                ),
                default=now,
            )
            heads[group] = head
        tenant = (new.queue, new.owner or "")
        last = self._turns.get(tenant)
        turn = head if last is None else max(head, last + FAIR_STEP_S)
        self._turns[tenant] = turn
        return turn

    def get(self, params: IdsParams) -> list[JobRecord]:
        with self._lock:
            return [_copy(self._jobs[i]) for i in params.ids if i in self._jobs]

    def query(self, params: QueryParams) -> Page:
        f = params.filter
        with self._lock:
            matches = [
                j
                for j in self._jobs.values()
                if (not f.states or j.state in f.states)
                and (f.queue is None or j.queue == f.queue)
                and (f.task is None or j.task == f.task)
                and (f.owner is None or j.owner == f.owner)
                and (f.batch is None or j.batch == f.batch)
                and (params.cursor is None or j.id < params.cursor)
            ]
            matches.sort(key=lambda j: j.id, reverse=True)
            page = [_copy(j) for j in matches[: params.limit]]
        more = len(matches) > params.limit
        return Page(jobs=page, next_cursor=page[-1].id if more and page else None)

    def cancel(self, params: IdsParams) -> list[JobRecord]:
        out = []
        with self._lock:
            now = self._clock()
            for job_id in params.ids:
                job = self._jobs.get(job_id)
                if job is None:
                    continue
                if job.state in CANCELLABLE_STATES:
                    job.state = JobState.CANCELLED
                    job.finished_at = now
                    job.lease_until = None
                out.append(_copy(job))
        return out

    def retry(self, params: IdsParams) -> list[JobRecord]:
        out = []
        with self._lock:
            now = self._clock()
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
                out.append(_copy(job))
        self._notifier.notify()
        return out

    def _key_taken(self, job: JobRecord) -> bool:
        if job.key is None:
            return False
        holder = self._jobs.get(self._keys.get(job.key, ""))
        return holder is not None and holder.id != job.id and holder.state in KEY_HOLDING_STATES

    def stats(self) -> list[QueueStats]:
        with self._lock:
            now = self._clock()
            per_queue: dict[str, dict[str, int]] = {}
            oldest: dict[str, float] = {}
            recent: dict[str, int] = {}
            for job in self._jobs.values():
                counts = per_queue.setdefault(job.queue, {s.value: 0 for s in JobState})
                counts[job.state.value] += 1
                if job.state in _READY and job.run_at <= now:
                    oldest[job.queue] = min(oldest.get(job.queue, now), job.run_at)
                if job.finished_at is not None and job.finished_at >= now - 60:
                    recent[job.queue] = recent.get(job.queue, 0) + 1
            return [
                QueueStats(
                    queue=queue,
                    counts=counts,
                    oldest_ready_age_s=(now - oldest[queue]) if queue in oldest else None,
                    finished_last_minute=recent.get(queue, 0),
                )
                for queue, counts in sorted(per_queue.items())
            ]

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
        rejected = []
        with self._lock:
            now = self._clock()
            for outcome in params.outcomes:
                job = self._held(outcome.id, outcome.delivery)
                if job is None:
                    rejected.append(outcome.id)
                    continue
                job.lease_until = None
                kind = outcome.kind
                if outcome.meta is not None:
                    job.meta = dict(outcome.meta)
                if kind is OutcomeKind.DEFER:
                    job.state = JobState.SCHEDULED
                    job.run_at = now + outcome.retry_delay_s
                    job.attempt -= 1
                    job.worker = None
                    continue
                if kind is OutcomeKind.RELEASE:
                    job.state = JobState.QUEUED
                    job.attempt -= 1
                    job.worker = None
                    continue
                if kind is OutcomeKind.RETRY:
                    job.state = JobState.SCHEDULED
                    job.run_at = now + outcome.retry_delay_s
                    job.error = outcome.error
                    continue
                job.state = JobState(kind.value)
                job.finished_at = now
                job.result = outcome.result
                job.error = outcome.error
                if kind is OutcomeKind.SUCCEEDED:
                    job.progress = 1.0
        self._notifier.notify()
        return FinishResult(rejected=rejected)

    def report_progress(self, params: ProgressParams) -> None:
        with self._lock:
            for update in params.updates:
                job = self._held(update.id, update.delivery)
                if job is not None:
                    job.progress = update.progress
                    job.progress_message = update.message

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
            for job in self._jobs.values():
                if job.state is not JobState.RUNNING or (job.lease_until or 0) >= now:
                    continue
                job.crashes += 1
                job.lease_until = None
                job.worker = None
                job.error = WORKER_LOST
                if job.crashes >= params.max_crashes:
                    job.state = JobState.DEAD
                    job.finished_at = now
                else:
                    job.state = JobState.QUEUED
                out.append(ReapedJob(id=job.id, state=job.state))
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
            return {n: self._marks[n] for n in params.names if n in self._marks}

    def set_mark(self, params: MarkParams) -> bool:
        with self._lock:
            if self._marks.get(params.name) != params.expected:
                return False
            self._marks[params.name] = params.value
            return True

    # -- wake-ups ----------------------------------------------------------
    def next_ready_at(self, queues: Sequence[str]) -> float | None:
        with self._lock:
            times = [
                j.run_at for j in self._jobs.values() if j.state in _READY and j.queue in queues
            ]
            return min(times) if times else None

    def change_marker(self) -> object:
        return None

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
