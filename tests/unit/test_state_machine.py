"""Stateful (model-based) tests of the job lifecycle, run against every sync store.

Hypothesis drives a store with random sequences of the lifecycle verbs (enqueue,
claim, heartbeat, finish, crash, reap, promote, cancel, retry, clock advances) and
checks, after every step, the invariants of the README's "States" and "Reliability" against what
the store reports through ``get`` and ``query``. A small model keeps which leases
(job id, delivery token) each simulated worker believes it holds; a crashed worker
simply forgets its leases. The clock is a fake one: nothing ever sleeps.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import msgspec
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from offload.backends.base import (
    ClaimParams,
    EnqueueParams,
    FinishParams,
    HeartbeatParams,
    IdsParams,
    JobFilter,
    LeaseRef,
    Outcome,
    OutcomeKind,
    QueryParams,
    ReapParams,
)
from offload.backends.memory import MemoryStore
from offload.backends.sqlite import SqliteStore
from offload.records import ErrorInfo, JobRecord, NewJob
from offload.states import (
    CANCELLABLE_STATES,
    KEY_HOLDING_STATES,
    RETRYABLE_STATES,
    TRANSITIONS,
    JobState,
)

QUEUE = "default"
WORKERS = ("w1", "w2", "w3")
KEYS = ("k1", "k2")
LEASE_S = 10.0  # the workers' default lease
JOB_LEASE_S = 4.0  # some jobs carry their own, shorter lease
MAX_CRASHES = 3
START = 1_000_000.0
BOOM = ErrorInfo(type="Boom", message="the task failed")


class FakeClock:
    """The store's clock; only the ``advance`` rule moves it (by whole seconds, exact floats)."""

    def __init__(self, start: float = START) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def reachable(transitions: dict[JobState, frozenset[JobState]]) -> dict[JobState, set[JobState]]:
    """For each state, every state reachable through one or more allowed transitions."""
    out: dict[JobState, set[JobState]] = {}
    for source, targets in transitions.items():
        seen: set[JobState] = set()
        frontier = list(targets)
        while frontier:
            state = frontier.pop()
            if state not in seen:
                seen.add(state)
                frontier.extend(transitions[state])
        out[source] = seen
    return out


REACHABLE = reachable(TRANSITIONS)


def test_reachability_helper() -> None:
    assert REACHABLE[JobState.SUCCEEDED] == set()
    assert JobState.RUNNING in REACHABLE[JobState.SCHEDULED]
    assert JobState.SUCCEEDED in REACHABLE[JobState.DEAD]  # dead -> queued -> running -> ...
    assert REACHABLE[JobState.QUEUED] >= {JobState.RUNNING, JobState.SCHEDULED}


def is_ready(job: JobRecord, now: float) -> bool:
    return job.state in (JobState.QUEUED, JobState.SCHEDULED) and job.run_at <= now


class LifecycleMachine(RuleBasedStateMachine):
    """One store, three simulated workers, one queue, a handful of unique keys."""

    make_store: ClassVar[Callable[[FakeClock, Path], Any]]

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.folder = Path(tempfile.mkdtemp(prefix="offload-sm-"))
        self.store = type(self).make_store(self.clock, self.folder)
        self.ids: list[str] = []  # every job id, in creation order
        self.seen: dict[str, JobRecord] = {}  # the last observation of each job
        # worker -> {job id: delivery token}; a token may be stale without the worker knowing.
        self.held: dict[str, dict[str, int]] = {w: {} for w in WORKERS}
        self.issued: set[tuple[str, int]] = set()  # every (job id, delivery) a claim handed out
        # What the current step did on purpose; the invariants allow these exceptions.
        self.retried: set[str] = set()
        self.released: set[str] = set()

    def teardown(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- helpers -------------------------------------------------------------
    def pick(self, index: int) -> str:
        return self.ids[index % len(self.ids)]

    def current(self, job_id: str) -> JobRecord:
        (record,) = self.store.get(IdsParams(ids=[job_id]))
        return record

    def live_holder(self, key: str, jobs: Iterable[JobRecord]) -> JobRecord | None:
        holders = [j for j in jobs if j.key == key and j.state in KEY_HOLDING_STATES]
        assert len(holders) <= 1, f"key {key} held by {[j.id for j in holders]}"
        return holders[0] if holders else None

    def expected_lease_until(self, job: JobRecord) -> float:
        return self.clock.now() + (job.lease_s if job.lease_s is not None else LEASE_S)

    # -- client rules --------------------------------------------------------
    @initialize(
        count=st.integers(1, 3),
        delay=st.sampled_from([0.0, 5.0]),
        lease_s=st.sampled_from([None, JOB_LEASE_S]),
    )
    def some_jobs(self, count: int, delay: float, lease_s: float | None) -> None:
        for _ in range(count):
            self.enqueue(
                key=None, delay=delay, max_attempts=3, priority=0, lease_s=lease_s, copies=1
            )

    @rule(
        key=st.sampled_from([None, *KEYS]),
        delay=st.sampled_from([0.0, 0.0, 5.0, 15.0]),
        max_attempts=st.integers(1, 3),
        priority=st.integers(0, 1),
        lease_s=st.sampled_from([None, None, JOB_LEASE_S]),
        copies=st.integers(1, 2),
    )
    def enqueue(
        self,
        key: str | None,
        delay: float,
        max_attempts: int,
        priority: int,
        lease_s: float | None,
        copies: int,
    ) -> None:
        now = self.clock.now()
        new_jobs = []
        for _ in range(copies):
            job_id = f"job-{len(self.ids) + len(new_jobs):06d}"
            new_jobs.append(
                NewJob(
                    id=job_id,
                    task="t",
                    queue=QUEUE,
                    payload=b"{}",
                    priority=priority,
                    max_attempts=max_attempts,
                    delay_s=delay,
                    lease_s=lease_s,
                    key=key,
                )
            )
        holder = None if key is None else self.live_holder(key, self.seen.values())
        out = self.store.enqueue(EnqueueParams(jobs=new_jobs))
        assert len(out) == copies
        for new, record in zip(new_jobs, out, strict=True):
            if holder is not None:
                # A held unique key returns the existing job instead of a new one.
                assert record == holder
                event("enqueue: held key returned the live job")
                continue
            assert record.id == new.id
            assert record.state is (JobState.SCHEDULED if delay > 0 else JobState.QUEUED)
            assert record.run_at == now + delay
            assert (record.attempt, record.delivery, record.crashes) == (0, 0, 0)
            assert record.lease_until is None
            self.ids.append(record.id)
            if key is not None:  # the second copy of a keyed batch returns this one
                holder = record

    @precondition(lambda self: self.ids)
    @rule(index=st.integers(0, 10_000), among=st.sampled_from(["any", "live", "running"]))
    def cancel(self, index: int, among: str) -> None:
        """A person cancels a job (a running one's worker keeps its now stale token)."""
        wanted = {"any": set(JobState), "live": CANCELLABLE_STATES, "running": {JobState.RUNNING}}
        pool = [i for i in self.ids if self.seen[i].state in wanted[among]] or self.ids
        job_id = pool[index % len(pool)]
        before = self.seen[job_id]
        (after,) = self.store.cancel(IdsParams(ids=[job_id]))
        if before.state in CANCELLABLE_STATES:
            event(f"cancel: {before.state.value} job cancelled")
            assert after.state is JobState.CANCELLED
            assert after.finished_at == self.clock.now()
            assert after.lease_until is None
        else:
            assert after == before, "cancelling a finished job must not touch it"

    def live_keyed(self) -> list[str]:
        return [
            i
            for i in self.ids
            if self.seen[i].key is not None and self.seen[i].state in KEY_HOLDING_STATES
        ]

    @precondition(lambda self: self.live_keyed())
    @rule(index=st.integers(0, 10_000), delay=st.sampled_from([0.0, 5.0]))
    def cancel_and_resubmit(self, index: int, delay: float) -> None:
        """A person cancels a keyed job and submits it again: the new job takes the key."""
        pool = self.live_keyed()
        old = self.seen[pool[index % len(pool)]]
        self.cancel(self.ids.index(old.id), "any")
        self.store_agrees_with_the_rules()
        self.enqueue(old.key, delay, 2, 0, None, 1)
        assert self.ids[-1] != old.id and self.current(self.ids[-1]).key == old.key

    @precondition(lambda self: self.ids)
    @rule(
        indices=st.lists(st.integers(0, 10_000), min_size=1, max_size=2),
        among=st.sampled_from(["any", "finished", "key_taken"]),
    )
    def retry(self, indices: list[int], among: str) -> None:
        """A person retries jobs; one whose key a newer live job holds must stay as it is."""
        if among == "key_taken":
            live_keys = {j.key for j in self.seen.values() if j.state in KEY_HOLDING_STATES}
            pool = [
                j.id
                for j in self.seen.values()
                if j.state in RETRYABLE_STATES and j.key is not None and j.key in live_keys
            ]
        else:
            pool = [i for i in self.ids if among == "any" or self.seen[i].state.is_terminal]
        pool = pool or self.ids
        ids = [pool[i % len(pool)] for i in indices]
        model = {i: msgspec.structs.replace(j) for i, j in self.seen.items()}
        expected_requeued = set()
        for job_id in ids:
            job = model[job_id]
            if job.state not in RETRYABLE_STATES:
                continue
            if job.key is not None:
                holder = self.live_holder(job.key, model.values())
                if holder is not None and holder.id != job_id:
                    event("retry: refused, key held by a newer job")
                    continue  # its key belongs to a newer live job: left as it is
            job.state = JobState.QUEUED
            expected_requeued.add(job_id)
            event(f"retry: {self.seen[job_id].state.value} job requeued")
        out = self.store.retry(IdsParams(ids=ids))
        assert [r.id for r in out] == ids
        for record in out:
            if record.id in expected_requeued:
                assert record.state is JobState.QUEUED
                assert record.attempt == 0
                assert record.crashes == 0
                assert record.run_at == self.clock.now()
                assert record.finished_at is None
                assert record.lease_until is None
                assert record.worker is None
            else:
                assert record == self.seen[record.id], f"retry of {record.id} should be refused"
        self.retried |= expected_requeued

    # -- worker rules --------------------------------------------------------
    @precondition(lambda self: self.ids)
    @rule(worker=st.sampled_from(WORKERS), limit=st.integers(1, 3))
    def claim(self, worker: str, limit: int) -> None:
        now = self.clock.now()
        ready = sorted(
            (j for j in self.seen.values() if is_ready(j, now)),
            key=lambda j: (-j.priority, j.run_at, j.id),
        )
        claimed = self.store.claim(
            ClaimParams(queues=[QUEUE], limit=limit, worker=worker, lease_s=LEASE_S)
        )
        # Exactly the best ``limit`` ready jobs: highest priority, then oldest.
        assert [j.id for j in claimed] == [j.id for j in ready[:limit]]
        for job in claimed:
            before = self.seen[job.id]
            assert job.state is JobState.RUNNING
            assert job.worker == worker
            assert job.delivery == before.delivery + 1
            assert job.attempt == before.attempt + 1
            assert job.lease_until == self.expected_lease_until(job)
            assert job.started_at == now
            token = (job.id, job.delivery)
            assert token not in self.issued, f"delivery token {token} handed out twice"
            self.issued.add(token)
            self.held[worker][job.id] = job.delivery

    @precondition(lambda self: self.ids)
    @rule(
        worker=st.sampled_from(WORKERS),
        stranger=st.one_of(st.none(), st.integers(0, 10_000)),
        shift=st.sampled_from([-1, 1]),
    )
    def heartbeat(self, worker: str, stranger: int | None, shift: int) -> None:
        """The worker renews every lease it believes it holds, maybe with a stranger's token."""
        leases = [LeaseRef(id=i, delivery=d) for i, d in sorted(self.held[worker].items())]
        if stranger is not None and self.ids:
            # A token this worker never got: an older or future delivery of some job.
            job_id = self.pick(stranger)
            if job_id not in self.held[worker]:
                leases.append(
                    LeaseRef(id=job_id, delivery=max(0, self.seen[job_id].delivery + shift))
                )
        if not leases:
            return
        now = self.clock.now()
        result = self.store.heartbeat(
            HeartbeatParams(leases=leases, worker=worker, lease_s=LEASE_S)
        )
        for lease in leases:
            before = self.seen[lease.id]
            after = self.current(lease.id)
            valid = before.state is JobState.RUNNING and before.delivery == lease.delivery
            if not valid:
                # Fencing: a token that is not the job's live one is never renewed.
                assert lease.id in result.lost, (lease, before.state, before.delivery)
                event("heartbeat: stale token lost")
            elif (before.lease_until or 0) >= now:
                assert lease.id not in result.lost, "a live lease was refused its heartbeat"
            if lease.id not in result.lost:
                # Renewed on the store's clock, by the job's own lease when it has one.
                assert after.lease_until == self.expected_lease_until(after)
                event("heartbeat: lease renewed")
            else:
                assert after == before, "a rejected heartbeat must not touch the job"
                self.held[worker].pop(lease.id, None)  # the worker learns it lost the lease

    def any_held(self) -> bool:
        return any(self.held.values())

    @precondition(any_held)
    @rule(
        index=st.integers(0, 10_000),
        kind=st.sampled_from(list(OutcomeKind)),
        delay=st.sampled_from([0.0, 3.0, 20.0]),
        tamper=st.sampled_from([0, -1, 1]),
        twice=st.booleans(),
    )
    def finish(self, index: int, kind: OutcomeKind, delay: float, tamper: int, twice: bool) -> None:
        """One outcome with the token the claimer got, or a tampered (stale/future) one."""
        held = sorted((w, i, d) for w in WORKERS for i, d in self.held[w].items())
        worker, job_id, token = held[index % len(held)]
        delivery = max(0, token + tamper)
        self.finish_many(worker, [(job_id, delivery)], kind, delay, twice=twice)

    @precondition(any_held)
    @rule(worker=st.sampled_from(WORKERS), kind=st.sampled_from(list(OutcomeKind)))
    def finish_all(self, worker: str, kind: OutcomeKind) -> None:
        """A worker acknowledging its whole batch in one round trip (e.g. release at shutdown)."""
        held = sorted(self.held[worker].items())
        if held:
            self.finish_many(worker, held, kind, 1.0, twice=False)

    def finish_many(
        self,
        worker: str,
        tokens: list[tuple[str, int]],
        kind: OutcomeKind,
        delay: float,
        *,
        twice: bool,
    ) -> None:
        now = self.clock.now()
        error = BOOM if kind in (OutcomeKind.RETRY, OutcomeKind.DEAD) else None
        result = b'{"ok": true}' if kind is OutcomeKind.SUCCEEDED else None
        outcomes = [
            Outcome(id=i, delivery=d, kind=kind, error=error, result=result, retry_delay_s=delay)
            for i, d in tokens
        ]
        if twice:
            outcomes = outcomes + outcomes
        answer = self.store.finish(FinishParams(outcomes=outcomes))
        rejected = list(answer.rejected)
        for job_id, delivery in tokens:
            before = self.seen[job_id]
            after = self.current(job_id)
            fenced_ok = before.state is JobState.RUNNING and before.delivery == delivery
            if not fenced_ok:
                # Fencing: any token but the job's live one is refused, and changes nothing.
                assert job_id in rejected, (job_id, delivery, before.state, before.delivery)
                event("finish: stale token rejected")
                assert after == before, "a rejected finish must not touch the job"
            else:
                if (before.lease_until or 0) >= now:
                    assert rejected.count(job_id) == (1 if twice else 0)
                accepted = rejected.count(job_id) < len([o for o in outcomes if o.id == job_id])
                event(f"finish: {kind.value} {'accepted' if accepted else 'refused (expired)'}")
                if accepted:
                    self.check_finished(before, after, kind, delay, error, result)
                    if twice:
                        assert job_id in rejected, "the second outcome for a lease must be fenced"
                else:  # an expired, unreaped lease: a store may refuse it
                    assert after == before
            self.held[worker].pop(job_id, None)  # finished or refused: the worker lets go

    def check_finished(
        self,
        before: JobRecord,
        after: JobRecord,
        kind: OutcomeKind,
        delay: float,
        error: ErrorInfo | None,
        result: bytes | None,
    ) -> None:
        now = self.clock.now()
        assert after.lease_until is None
        assert after.delivery == before.delivery
        if kind is OutcomeKind.RELEASE:
            assert after.state is JobState.QUEUED
            assert after.attempt == before.attempt - 1
            assert after.worker is None
            self.released.add(after.id)
        elif kind is OutcomeKind.DEFER:
            assert after.state is JobState.SCHEDULED
            assert after.run_at == now + delay
            assert after.attempt == before.attempt - 1
            assert after.worker is None
            assert after.error == before.error  # waiting is not a failure
            self.released.add(after.id)
        elif kind is OutcomeKind.RETRY:
            assert after.state is JobState.SCHEDULED
            assert after.run_at == now + delay
            assert after.error == error
            assert after.attempt == before.attempt
        else:
            assert after.state is JobState(kind.value)
            assert after.finished_at == now
            # The job ends with this outcome's error (none for a success), not an error left
            # over from an earlier attempt such as a reaped lease's WorkerLost.
            assert after.error == error
            assert after.result == result
            assert after.attempt == before.attempt
            if kind is OutcomeKind.SUCCEEDED:
                assert after.progress == 1.0

    @precondition(any_held)
    @rule(worker=st.sampled_from(WORKERS))
    def crash(self, worker: str) -> None:
        """The worker process dies: its leases are simply forgotten, nothing is told."""
        self.held[worker].clear()

    @precondition(lambda self: self.ids)
    @rule(
        worker=st.sampled_from(WORKERS),
        kind=st.sampled_from(list(OutcomeKind)),
        delay=st.sampled_from([0.0, 3.0]),
        beat=st.booleans(),
    )
    def claim_and_finish(self, worker: str, kind: OutcomeKind, delay: float, beat: bool) -> None:
        """A healthy worker: claims one job, runs it (renewing its lease once if ``beat``)
        and reports with the token it got."""
        before = dict(self.held[worker])
        self.claim(worker, 1)
        self.store_agrees_with_the_rules()  # each sub-step is checked like a step
        new = sorted(set(self.held[worker].items()) - set(before.items()))
        if new and beat:
            self.advance(2.0)
            self.heartbeat(worker, None, 1)
            self.store_agrees_with_the_rules()
            new = sorted(set(self.held[worker].items()) - set(before.items()))
        if new:
            self.finish_many(worker, new, kind, delay, twice=False)

    @precondition(lambda self: self.ids)
    @rule(worker=st.sampled_from(WORKERS))
    def poison_kills_worker(self, worker: str) -> None:
        """A worker claims a job and dies on it; its lease runs out and the reaper runs.

        Three of these on the same job quarantine it as dead (the README's "Reliability").
        """
        self.claim(worker, 1)
        self.store_agrees_with_the_rules()  # each sub-step is checked like a step
        self.crash(worker)
        self.advance(LEASE_S)
        self.reap_expired()  # a lease that ends exactly now has not run out yet
        self.store_agrees_with_the_rules()
        self.advance(1.0)
        self.reap_expired()

    @precondition(lambda self: self.ids)
    @rule(
        frozen=st.sampled_from(WORKERS),
        late_kind=st.sampled_from(list(OutcomeKind)),
        kind=st.sampled_from(list(OutcomeKind)),
    )
    def frozen_worker_wakes_late(
        self, frozen: str, late_kind: OutcomeKind, kind: OutcomeKind
    ) -> None:
        """Reliability: a frozen worker cannot overwrite the job's new attempt.

        ``frozen`` claims a job and stops renewing; the lease runs out, the reaper hands the
        job back and another worker claims it. The frozen worker's late outcome must be
        refused; the new holder's outcome must be taken.
        """
        before = dict(self.held[frozen])
        self.claim(frozen, 1)
        self.store_agrees_with_the_rules()
        new = sorted(set(self.held[frozen].items()) - set(before.items()))
        if not new:
            return
        (job_id, old_token), *_ = new
        self.advance(LEASE_S + 1)
        self.reap_expired()
        self.store_agrees_with_the_rules()
        other = next(w for w in WORKERS if w != frozen)
        taken = dict(self.held[other])
        self.claim(other, 3)
        self.store_agrees_with_the_rules()
        self.finish_many(frozen, [(job_id, old_token)], late_kind, 0.0, twice=False)
        self.store_agrees_with_the_rules()
        if self.held[other].get(job_id, old_token) != taken.get(job_id, old_token):
            event("frozen worker: late outcome refused, new holder finishes")
            self.finish_many(other, [(job_id, self.held[other][job_id])], kind, 0.0, twice=False)

    # -- maintenance and time ------------------------------------------------
    @rule(seconds=st.sampled_from([1.0, 2.0, 4.0, 6.0, 10.0, 12.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: any(j.state is JobState.SCHEDULED for j in self.seen.values()))
    @rule()
    def promote_due(self) -> None:
        now = self.clock.now()
        due = {
            j.id for j in self.seen.values() if j.state is JobState.SCHEDULED and j.run_at <= now
        }
        assert self.store.promote_due() == len(due)
        for job_id in due:
            assert self.current(job_id).state is JobState.QUEUED

    @precondition(lambda self: any(j.state is JobState.RUNNING for j in self.seen.values()))
    @rule()
    def reap_expired(self) -> None:
        now = self.clock.now()
        expired = {
            j.id: j
            for j in self.seen.values()
            if j.state is JobState.RUNNING and j.lease_until is not None and j.lease_until < now
        }
        reaped = self.store.reap_expired(ReapParams(max_crashes=MAX_CRASHES))
        assert sorted(r.id for r in reaped) == sorted(expired)
        for r in reaped:
            before = expired[r.id]
            after = self.current(r.id)
            assert after.state is r.state
            assert after.crashes == before.crashes + 1
            # A job that keeps killing its worker is quarantined as dead after 3 recoveries.
            want = JobState.DEAD if after.crashes >= MAX_CRASHES else JobState.QUEUED
            assert after.state is want
            event(f"reap: expired lease -> {want.value}")
            assert after.attempt == before.attempt  # the attempt is counted
            assert after.lease_until is None
            assert after.worker is None
            assert after.error is not None and after.error.type == "WorkerLost"

    # -- invariants ----------------------------------------------------------
    @invariant()
    def store_agrees_with_the_rules(self) -> None:
        records = self.store.get(IdsParams(ids=self.ids))
        assert [r.id for r in records] == self.ids, "a job went missing"
        now_jobs = {r.id: r for r in records}

        # Every job is in exactly one state: the per-state queries partition the jobs.
        everything = self.store.query(QueryParams(limit=10_000))
        assert {j.id: j for j in everything.jobs} == now_jobs
        assert everything.next_cursor is None
        by_state: dict[str, JobState] = {}
        for state in JobState:
            page = self.store.query(QueryParams(filter=JobFilter(states=[state]), limit=10_000))
            for job in page.jobs:
                assert job.id not in by_state, f"{job.id} is both {by_state[job.id]} and {state}"
                by_state[job.id] = state
        assert by_state == {i: r.state for i, r in now_jobs.items()}

        for job in records:
            assert isinstance(job.state, JobState)
            assert job.attempt >= 0 and job.crashes >= 0 and job.delivery >= 0
            assert job.attempt <= job.delivery
            if job.state is JobState.RUNNING:
                assert job.lease_until is not None, f"{job.id} runs without a lease"
                assert job.worker is not None
            else:
                assert job.lease_until is None, f"{job.id} is {job.state} but keeps a lease"

            before = self.seen.get(job.id)
            if before is not None:
                self.check_change(before, job)

            # At most one live lease per job: only one simulated worker holds its live token.
            holders = [w for w in WORKERS if self.held[w].get(job.id) == job.delivery]
            if job.state is JobState.RUNNING:
                assert len(holders) <= 1, f"{job.id} leased to {holders}"
                if holders:
                    assert holders == [job.worker]

        # A held unique key maps to at most one job in scheduled/queued/running.
        for key in KEYS:
            self.live_holder(key, records)

        self.seen = now_jobs
        self.retried = set()
        self.released = set()

    def check_change(self, before: JobRecord, after: JobRecord) -> None:
        job_id = after.id
        if after.state is not before.state:
            assert after.state in REACHABLE[before.state], (
                f"{job_id}: {before.state} -> {after.state} is not allowed"
            )
        if before.state is JobState.SUCCEEDED:
            assert after == before, f"{job_id} succeeded and then changed"
        elif before.state in RETRYABLE_STATES and job_id not in self.retried:
            assert after == before, f"{job_id} left {before.state} without a retry"

        if job_id in self.retried:
            assert after.attempt == 0
        elif job_id in self.released:
            assert after.attempt == before.attempt - 1
        else:
            assert after.attempt >= before.attempt, f"{job_id}: attempt went down"
        assert after.delivery >= before.delivery, f"{job_id}: delivery went down"
        if job_id not in self.retried:
            assert after.crashes >= before.crashes


def _memory(clock: FakeClock, folder: Path) -> MemoryStore:
    return MemoryStore(clock=clock.now)


def _sqlite(clock: FakeClock, folder: Path) -> SqliteStore:
    return SqliteStore(str(folder / "offload.db"), clock=clock.now)


class MemoryLifecycle(LifecycleMachine):
    make_store = staticmethod(_memory)


class SqliteLifecycle(LifecycleMachine):
    make_store = staticmethod(_sqlite)


SETTINGS = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TestMemoryLifecycle = MemoryLifecycle.TestCase
TestMemoryLifecycle.settings = SETTINGS
TestSqliteLifecycle = SqliteLifecycle.TestCase
TestSqliteLifecycle.settings = SETTINGS
