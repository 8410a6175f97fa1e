"""Backend conformance: enqueue, claim, heartbeat, finish and progress.

Every test runs once per backend in ``conftest.BACKEND_FACTORIES``. Time is the
fake clock's: leases and delays expire by ``clock.advance``, never by sleeping.
"""

from __future__ import annotations

import pytest
from conformance_helpers import (
    BOOM,
    LEASE_S,
    at,
    claim,
    claim_one,
    enqueue,
    enqueue_one,
    finish,
    get,
    get_one,
    heartbeat,
    new_job,
)

from offload.backends.base import (
    Backend,
    FinishParams,
    IdsParams,
    Outcome,
    OutcomeKind,
    ProgressParams,
    ProgressUpdate,
    ReapParams,
)
from offload.records import ErrorInfo
from offload.states import JobState

# -- enqueue ---------------------------------------------------------------


async def test_enqueue_returns_a_queued_record_with_every_field(backend: Backend, clock) -> None:
    new = new_job(
        task="docs.convert",
        queue="docs",
        payload=b'{"args": ["a.docx"], "kwargs": {"fmt": "pdf"}}',
        priority=7,
        max_attempts=4,
        lease_s=12.5,
        timeout_s=300.0,
        key="u42:a.docx",
        batch="batch-1",
        owner="alice",
        meta={"origin": "upload", "nested": {"n": [1, 2]}},
    )
    (record,) = await enqueue(backend, new)

    assert record.id == new.id
    assert record.task == "docs.convert"
    assert record.queue == "docs"
    assert record.state is JobState.QUEUED
    assert record.payload == new.payload
    assert record.priority == 7
    assert record.max_attempts == 4
    assert record.attempt == 0
    assert record.delivery == 0
    assert record.crashes == 0
    assert record.run_at == at(clock.now)
    assert record.created_at == at(clock.now)
    assert record.lease_s == 12.5
    assert record.timeout_s == 300.0
    assert record.lease_until is None
    assert record.worker is None
    assert record.started_at is None
    assert record.finished_at is None
    assert record.result is None
    assert record.error is None
    assert record.progress == 0.0
    assert record.key == "u42:a.docx"
    assert record.batch == "batch-1"
    assert record.owner == "alice"
    assert record.meta == {"origin": "upload", "nested": {"n": [1, 2]}}


async def test_enqueued_job_is_stored_as_returned(backend: Backend) -> None:
    new = new_job(meta={"k": "v"}, owner="bob", key="k1", lease_s=5.0)
    (returned,) = await enqueue(backend, new)
    stored = await get_one(backend, new.id)
    assert stored == returned
    # The blocking facade reads the same store.
    assert backend.blocking.get(IdsParams(ids=[new.id])) == [returned]


async def test_enqueue_batch_stores_every_job_in_order(backend: Backend) -> None:
    jobs = [new_job(payload=b'{"i": %d}' % i) for i in range(20)]
    records = await enqueue(backend, *jobs)
    assert [r.id for r in records] == [j.id for j in jobs]
    stored = await get(backend, *[j.id for j in jobs])
    assert [r.payload for r in stored] == [j.payload for j in jobs]
    assert all(r.state is JobState.QUEUED for r in stored)


async def test_enqueue_batch_is_atomic_when_one_job_fails(backend: Backend) -> None:
    existing = await enqueue_one(backend)
    first, second = new_job(key="atomic-key"), new_job()
    clash = new_job(id=existing.id)  # the same id again: this batch cannot be stored
    with pytest.raises(ValueError, match="already exists"):  # the same error on every engine
        await enqueue(backend, first, second, clash)
    assert await get(backend, first.id, second.id) == []
    # Nothing of the failed batch holds the unique key either.
    (again,) = await enqueue(backend, new_job(key="atomic-key"))
    assert again.id != first.id
    assert (await get_one(backend, existing.id)).state is JobState.QUEUED


async def test_enqueue_batch_with_a_repeated_id_stores_nothing(backend: Backend) -> None:
    first = new_job()
    with pytest.raises(ValueError, match="already exists"):
        await enqueue(backend, first, new_job(), new_job(id=first.id))
    assert await get(backend, first.id) == []
    (stored,) = await enqueue(backend, first)  # the failed batch left no trace of its ids
    assert stored.id == first.id


async def test_delay_makes_a_scheduled_job(backend: Backend, clock) -> None:
    record = await enqueue_one(backend, delay_s=60.0)
    assert record.state is JobState.SCHEDULED
    assert record.run_at == at(clock.now + 60.0)
    assert (await get_one(backend, record.id)).state is JobState.SCHEDULED


async def test_run_at_is_absolute(backend: Backend, clock) -> None:
    future = await enqueue_one(backend, run_at=clock.now + 3600.0)
    past = await enqueue_one(backend, run_at=clock.now - 10.0)
    both = await enqueue_one(backend, run_at=clock.now + 100.0, delay_s=5.0)
    assert future.state is JobState.SCHEDULED
    assert future.run_at == at(clock.now + 3600.0)
    assert past.state is JobState.QUEUED
    assert past.run_at == at(clock.now - 10.0)
    assert both.state is JobState.SCHEDULED
    assert both.run_at == at(clock.now + 100.0)  # run_at wins over delay_s


@pytest.mark.parametrize("holder_state", ["queued", "scheduled", "running"])
async def test_held_unique_key_returns_the_existing_job(
    backend: Backend, holder_state: str
) -> None:
    delay = 60.0 if holder_state == "scheduled" else 0.0
    holder = await enqueue_one(backend, key="once", delay_s=delay)
    if holder_state == "running":
        await claim_one(backend)
    duplicate = new_job(key="once", payload=b'{"other": true}')
    (returned,) = await enqueue(backend, duplicate)
    assert returned.id == holder.id
    assert returned.state is JobState(holder_state)
    assert returned.payload == holder.payload
    assert await get(backend, duplicate.id) == []
    # The id that was not stored is free: nothing of it lingers.
    (stored,) = await enqueue(backend, new_job(id=duplicate.id))
    assert stored.id == duplicate.id


@pytest.mark.parametrize("end", ["succeeded", "dead", "cancelled", "cancel", "reaped_dead"])
async def test_unique_key_is_free_again_once_the_job_ends(
    backend: Backend, clock, end: str
) -> None:
    holder = await enqueue_one(backend, key="once")
    if end == "cancel":
        await backend.cancel(IdsParams(ids=[holder.id]))
    elif end == "reaped_dead":
        await claim_one(backend, lease_s=10.0)
        clock.advance(11.0)
        await backend.reap_expired(ReapParams(max_crashes=1))
    else:
        job = await claim_one(backend)
        await finish(backend, job, OutcomeKind(end), error=BOOM if end == "dead" else None)
    assert (await get_one(backend, holder.id)).state.is_terminal

    (fresh,) = await enqueue(backend, new_job(key="once"))
    assert fresh.id != holder.id
    assert fresh.state is JobState.QUEUED
    assert (await get_one(backend, fresh.id)).key == "once"
    # ... and the new job holds the key in turn.
    (again,) = await enqueue(backend, new_job(key="once"))
    assert again.id == fresh.id


async def test_unique_key_is_not_freed_by_a_retry_outcome(backend: Backend) -> None:
    holder = await enqueue_one(backend, key="once", max_attempts=3)
    job = await claim_one(backend)
    await finish(backend, job, OutcomeKind.RETRY, error=BOOM, retry_delay_s=30.0)
    (returned,) = await enqueue(backend, new_job(key="once"))
    assert returned.id == holder.id
    assert returned.state is JobState.SCHEDULED


async def test_duplicate_keys_inside_one_batch(backend: Backend) -> None:
    first, second, other = new_job(key="k"), new_job(key="k"), new_job(key="other")
    records = await enqueue(backend, first, second, other)
    assert [r.id for r in records] == [first.id, first.id, other.id]
    assert await get(backend, second.id) == []
    assert [r.id for r in await claim(backend)] == [first.id, other.id]


# -- claim -------------------------------------------------------------------


async def test_claim_takes_highest_priority_then_oldest(backend: Backend, clock) -> None:
    # Ids sort against age on purpose: "oldest" means earliest run_at, not smallest id.
    await enqueue(backend, new_job(id="job-z-low", priority=0))
    clock.advance(1)
    await enqueue(backend, new_job(id="job-y-high-old", priority=5))
    clock.advance(1)
    await enqueue(backend, new_job(id="job-x-low", priority=0))
    clock.advance(1)
    await enqueue(backend, new_job(id="job-w-high-new", priority=5))
    clock.advance(1)
    await enqueue(backend, new_job(id="job-v-negative", priority=-3))
    clock.advance(1)

    expected = ["job-y-high-old", "job-w-high-new", "job-z-low", "job-x-low", "job-v-negative"]
    first_two = await claim(backend, limit=2)
    assert [j.id for j in first_two] == expected[:2]
    one_by_one = [(await claim_one(backend)).id for _ in range(3)]
    assert one_by_one == expected[2:]
    assert await claim(backend) == []


async def test_claim_returns_jobs_in_priority_order(backend: Backend, clock) -> None:
    for i, priority in enumerate([1, 9, 5, 9, 0]):
        await enqueue(backend, new_job(id=f"job-{9 - i}", priority=priority))
        clock.advance(1)
    claimed = await claim(backend, limit=10)
    assert [j.id for j in claimed] == ["job-8", "job-6", "job-7", "job-9", "job-5"]


async def test_claim_honours_limit_and_never_hands_a_job_out_twice(backend: Backend) -> None:
    jobs = [new_job() for _ in range(5)]
    await enqueue(backend, *jobs)
    batches = [await claim(backend, limit=2) for _ in range(4)]
    assert [len(b) for b in batches] == [2, 2, 1, 0]
    ids = [j.id for b in batches for j in b]
    assert sorted(ids) == sorted(j.id for j in jobs)
    assert await claim(backend, limit=0) == []


async def test_claim_takes_only_the_listed_queues(backend: Backend) -> None:
    a = await enqueue_one(backend, queue="a")
    b = await enqueue_one(backend, queue="b")
    c = await enqueue_one(backend, queue="c")
    claimed = await claim(backend, ["a", "c"])
    assert sorted(j.id for j in claimed) == sorted([a.id, c.id])
    assert (await get_one(backend, b.id)).state is JobState.QUEUED
    assert await claim(backend, ["nothing-here"]) == []
    assert [j.id for j in await claim(backend, ["b"])] == [b.id]


async def test_claim_over_several_queues_takes_the_best_of_all(backend: Backend) -> None:
    await enqueue_one(backend, queue="a", priority=1)
    best = await enqueue_one(backend, queue="c", priority=5)
    second = await enqueue_one(backend, queue="a", priority=3)
    claimed = await claim(backend, ["a", "c"], limit=2)
    assert [j.id for j in claimed] == [best.id, second.id]


async def test_claim_skips_future_scheduled_jobs_and_takes_due_ones(
    backend: Backend, clock
) -> None:
    later = await enqueue_one(backend, delay_s=60.0)
    assert await claim(backend) == []
    clock.advance(59.0)
    assert await claim(backend) == []
    clock.advance(2.0)
    # Due: claimable straight from scheduled, without promote_due.
    (job,) = await claim(backend)
    assert job.id == later.id
    assert job.state is JobState.RUNNING


async def test_claim_leases_the_job(backend: Backend, clock) -> None:
    record = await enqueue_one(backend)
    clock.advance(5.0)
    job = await claim_one(backend, worker="worker-7", lease_s=20.0)
    assert job.id == record.id
    assert job.state is JobState.RUNNING
    assert job.attempt == 1
    assert job.delivery == 1
    assert job.worker == "worker-7"
    assert job.started_at == at(clock.now)
    assert job.lease_until == at(clock.now + 20.0)
    assert await get_one(backend, job.id) == job


async def test_per_job_lease_wins_over_the_claim_default(backend: Backend, clock) -> None:
    own = await enqueue_one(backend, lease_s=90.0)
    default = await enqueue_one(backend)
    leased = {j.id: j for j in await claim(backend, lease_s=20.0)}
    assert leased[own.id].lease_until == at(clock.now + 90.0)
    assert leased[default.id].lease_until == at(clock.now + 20.0)


async def test_every_claim_counts_attempt_and_delivery(backend: Backend, clock) -> None:
    await enqueue_one(backend, max_attempts=5)
    first = await claim_one(backend)
    await finish(backend, first, OutcomeKind.RETRY, error=BOOM, retry_delay_s=0.0)
    second = await claim_one(backend)
    assert (second.attempt, second.delivery) == (2, 2)
    clock.advance(LEASE_S + 1)
    await backend.reap_expired(ReapParams(max_crashes=10))
    third = await claim_one(backend)
    # A reaped attempt is counted (the README's "States"), and delivery is never reused.
    assert (third.attempt, third.delivery) == (3, 3)


# -- heartbeat ---------------------------------------------------------------


async def test_heartbeat_extends_the_lease(backend: Backend, clock) -> None:
    await enqueue_one(backend)
    job = await claim_one(backend, lease_s=10.0)
    clock.advance(8.0)
    result = await heartbeat(backend, (job.id, job.delivery), lease_s=10.0)
    assert result.lost == []
    assert (await get_one(backend, job.id)).lease_until == at(clock.now + 10.0)
    clock.advance(8.0)  # past the first lease, inside the renewed one
    assert await backend.reap_expired(ReapParams()) == []
    assert (await get_one(backend, job.id)).state is JobState.RUNNING


async def test_heartbeat_uses_the_jobs_own_lease(backend: Backend, clock) -> None:
    await enqueue_one(backend, lease_s=90.0)
    job = await claim_one(backend, lease_s=10.0)
    clock.advance(30.0)
    assert (await heartbeat(backend, (job.id, job.delivery), lease_s=10.0)).lost == []
    assert (await get_one(backend, job.id)).lease_until == at(clock.now + 90.0)


async def test_heartbeat_reports_leases_no_longer_held(backend: Backend, clock) -> None:
    held = await enqueue_one(backend)
    cancelled = await enqueue_one(backend)
    done = await enqueue_one(backend)
    queued = await enqueue_one(backend)
    jobs = {j.id: j for j in await claim(backend, limit=3)}
    assert set(jobs) == {held.id, cancelled.id, done.id}
    await backend.cancel(IdsParams(ids=[cancelled.id]))
    await finish(backend, jobs[done.id], result=b"1")
    before = await get_one(backend, done.id)

    clock.advance(5.0)
    result = await heartbeat(
        backend,
        (held.id, 1),
        (cancelled.id, 1),
        (done.id, 1),
        (queued.id, 1),  # never claimed
        ("no-such-job", 1),
    )
    assert sorted(result.lost) == sorted([cancelled.id, done.id, queued.id, "no-such-job"])
    assert (await get_one(backend, held.id)).lease_until == at(clock.now + LEASE_S)
    assert await get_one(backend, done.id) == before
    assert (await get_one(backend, cancelled.id)).state is JobState.CANCELLED


async def test_heartbeat_with_a_wrong_delivery_is_lost_and_extends_nothing(
    backend: Backend, clock
) -> None:
    await enqueue_one(backend)
    job = await claim_one(backend, lease_s=10.0)
    clock.advance(5.0)
    result = await heartbeat(backend, (job.id, job.delivery + 1), lease_s=10.0)
    assert result.lost == [job.id]
    assert (await get_one(backend, job.id)).lease_until == at(job.lease_until)


# -- finish ------------------------------------------------------------------


async def test_finish_succeeded_stores_the_result(backend: Backend, clock) -> None:
    await enqueue_one(backend)
    job = await claim_one(backend)
    clock.advance(3.0)
    result = await finish(backend, job, OutcomeKind.SUCCEEDED, result=b'{"pages": 6}')
    assert result.rejected == []
    stored = await get_one(backend, job.id)
    assert stored.state is JobState.SUCCEEDED
    assert stored.result == b'{"pages": 6}'
    assert stored.finished_at == at(clock.now)
    assert stored.lease_until is None
    assert stored.progress == 1.0
    assert stored.attempt == 1
    assert stored.error is None
    assert await claim(backend) == []


@pytest.mark.parametrize("earlier", ["retry", "reaped"])
async def test_success_after_a_failed_attempt_clears_the_error(
    backend: Backend, clock, earlier: str
) -> None:
    # finish records the outcome's error; a success has none, so a succeeded
    # job must not go on showing the error of an earlier attempt.
    await enqueue_one(backend, max_attempts=3)
    first = await claim_one(backend, lease_s=10.0)
    if earlier == "retry":
        await finish(backend, first, OutcomeKind.RETRY, error=BOOM)
    else:
        clock.advance(11.0)
        await backend.reap_expired(ReapParams())
    second = await claim_one(backend)
    assert second.error is not None
    assert (await finish(backend, second, result=b'"ok"')).rejected == []
    stored = await get_one(backend, first.id)
    assert stored.state is JobState.SUCCEEDED
    assert stored.result == b'"ok"'
    assert stored.error is None


async def test_finish_retry_schedules_the_job_again(backend: Backend, clock) -> None:
    await enqueue_one(backend, max_attempts=3)
    job = await claim_one(backend)
    clock.advance(2.0)
    result = await finish(backend, job, OutcomeKind.RETRY, error=BOOM, retry_delay_s=45.0)
    assert result.rejected == []
    stored = await get_one(backend, job.id)
    assert stored.state is JobState.SCHEDULED
    assert stored.run_at == at(clock.now + 45.0)
    assert stored.error == BOOM
    assert stored.lease_until is None
    assert stored.finished_at is None
    assert stored.attempt == 1
    assert await claim(backend) == []
    clock.advance(45.5)
    again = await claim_one(backend)
    assert again.id == job.id
    assert (again.attempt, again.delivery) == (2, 2)
    assert again.error == BOOM  # the last error stays visible while the next attempt runs


async def test_finish_dead_keeps_the_error(backend: Backend, clock) -> None:
    await enqueue_one(backend)
    job = await claim_one(backend)
    clock.advance(1.0)
    assert (await finish(backend, job, OutcomeKind.DEAD, error=BOOM)).rejected == []
    stored = await get_one(backend, job.id)
    assert stored.state is JobState.DEAD
    assert stored.error == BOOM
    assert stored.finished_at == at(clock.now)
    assert stored.lease_until is None
    assert await claim(backend) == []


async def test_finish_cancelled(backend: Backend, clock) -> None:
    await enqueue_one(backend)
    job = await claim_one(backend)
    clock.advance(1.0)
    assert (await finish(backend, job, OutcomeKind.CANCELLED)).rejected == []
    stored = await get_one(backend, job.id)
    assert stored.state is JobState.CANCELLED
    assert stored.finished_at == at(clock.now)
    assert stored.lease_until is None


async def test_finish_release_hands_the_job_back_uncounted(backend: Backend) -> None:
    await enqueue_one(backend)
    job = await claim_one(backend, worker="w1")
    assert (await finish(backend, job, OutcomeKind.RELEASE)).rejected == []
    stored = await get_one(backend, job.id)
    assert stored.state is JobState.QUEUED
    assert stored.attempt == 0
    assert stored.worker is None
    assert stored.lease_until is None
    assert stored.finished_at is None
    again = await claim_one(backend, worker="w2")
    assert again.id == job.id
    assert (again.attempt, again.delivery) == (1, 2)  # attempt not counted, delivery is
    assert again.worker == "w2"


async def test_finish_defer_waits_as_scheduled_without_counting_the_attempt(
    backend: Backend, clock
) -> None:
    await enqueue_one(backend, max_attempts=1, meta={"origin": "upload"})
    job = await claim_one(backend, worker="w1")
    note = {"origin": "upload", "waiting_for": "rate limit 'api' (10/s)"}
    deferred = Outcome(
        id=job.id, delivery=job.delivery, kind=OutcomeKind.DEFER, retry_delay_s=5.0, meta=note
    )
    assert (await backend.finish(FinishParams(outcomes=[deferred]))).rejected == []
    stored = await get_one(backend, job.id)
    assert stored.state is JobState.SCHEDULED
    assert stored.run_at == at(clock.now + 5.0)
    assert (stored.attempt, stored.worker, stored.lease_until) == (0, None, None)
    assert stored.error is None
    assert stored.meta == note
    assert await claim(backend) == []  # not due yet
    clock.advance(5.0)
    again = await claim_one(backend, worker="w2")
    # the only attempt is still there: a deferral never uses one up
    assert (again.id, again.attempt, again.max_attempts) == (job.id, 1, 1)
    assert again.meta == note


async def test_finish_batch_applies_what_it_can_and_rejects_the_rest(backend: Backend) -> None:
    for _ in range(3):
        await enqueue_one(backend, max_attempts=2)
    ok, retried, stale = await claim(backend)
    outcomes = [
        Outcome(id=ok.id, delivery=ok.delivery, kind=OutcomeKind.SUCCEEDED, result=b"1"),
        Outcome(id=retried.id, delivery=retried.delivery, kind=OutcomeKind.RETRY, error=BOOM),
        Outcome(id=stale.id, delivery=stale.delivery + 5, kind=OutcomeKind.SUCCEEDED),
        Outcome(id="no-such-job", delivery=1, kind=OutcomeKind.SUCCEEDED),
    ]
    result = await backend.finish(FinishParams(outcomes=outcomes))
    assert sorted(result.rejected) == sorted([stale.id, "no-such-job"])
    states = {j.id: j.state for j in await get(backend, ok.id, retried.id, stale.id)}
    assert states == {
        ok.id: JobState.SUCCEEDED,
        retried.id: JobState.SCHEDULED,
        stale.id: JobState.RUNNING,
    }


async def test_finish_twice_is_rejected_the_second_time(backend: Backend) -> None:
    await enqueue_one(backend)
    job = await claim_one(backend)
    assert (await finish(backend, job, result=b"1")).rejected == []
    second = await finish(backend, job, OutcomeKind.DEAD, error=BOOM)
    assert second.rejected == [job.id]
    stored = await get_one(backend, job.id)
    assert stored.state is JobState.SUCCEEDED
    assert stored.result == b"1"
    assert stored.error is None


@pytest.mark.parametrize("kind", list(OutcomeKind))
async def test_fencing_rejects_a_stale_delivery_after_reap_and_reclaim(
    backend: Backend, clock, kind: OutcomeKind
) -> None:
    await enqueue_one(backend, max_attempts=3)
    frozen = await claim_one(backend, worker="frozen", lease_s=10.0)
    clock.advance(11.0)
    reaped = await backend.reap_expired(ReapParams(max_crashes=3))
    assert [(r.id, r.state) for r in reaped] == [(frozen.id, JobState.QUEUED)]
    current = await claim_one(backend, worker="fresh", lease_s=10.0)
    assert current.delivery > frozen.delivery
    before = await get_one(backend, frozen.id)

    late = await finish(backend, frozen, kind, result=b'"late"', error=BOOM, retry_delay_s=1.0)
    assert late.rejected == [frozen.id]
    assert await get_one(backend, frozen.id) == before
    lost = await heartbeat(backend, (frozen.id, frozen.delivery), worker="frozen")
    assert lost.lost == [frozen.id]

    # The current holder is unaffected and can still finish.
    assert (await finish(backend, current, result=b'"fresh"')).rejected == []
    stored = await get_one(backend, frozen.id)
    assert stored.state is JobState.SUCCEEDED
    assert stored.result == b'"fresh"'


# -- report_progress ---------------------------------------------------------


async def test_progress_is_recorded_with_the_current_lease(backend: Backend) -> None:
    await enqueue_one(backend)
    job = await claim_one(backend)
    update = ProgressUpdate(id=job.id, delivery=job.delivery, progress=0.5, message="page 3 of 6")
    await backend.report_progress(ProgressParams(updates=[update]))
    stored = await get_one(backend, job.id)
    assert stored.progress == 0.5
    assert stored.progress_message == "page 3 of 6"


async def test_progress_without_the_current_lease_is_ignored(backend: Backend, clock) -> None:
    await enqueue_one(backend)
    queued = await enqueue_one(backend, queue="elsewhere")
    old = await claim_one(backend, lease_s=10.0)
    clock.advance(11.0)
    await backend.reap_expired(ReapParams())
    current = await claim_one(backend)
    await backend.report_progress(
        ProgressParams(
            updates=[
                ProgressUpdate(id=old.id, delivery=old.delivery, progress=0.9, message="stale"),
                ProgressUpdate(id=queued.id, delivery=0, progress=0.3, message="not running"),
                ProgressUpdate(id="no-such-job", delivery=1, progress=0.1),
            ]
        )
    )
    assert (await get_one(backend, old.id)).progress == 0.0
    assert (await get_one(backend, queued.id)).progress == 0.0
    await finish(backend, current, OutcomeKind.DEAD, error=BOOM)
    await backend.report_progress(
        ProgressParams(
            updates=[ProgressUpdate(id=current.id, delivery=current.delivery, progress=0.4)]
        )
    )
    stored = await get_one(backend, current.id)
    assert stored.progress == 0.0
    assert stored.progress_message is None


async def test_error_info_round_trips(backend: Backend) -> None:
    await enqueue_one(backend)
    job = await claim_one(backend)
    error = ErrorInfo(type="OSError", message="disk full: é ✓", traceback=None)
    await finish(backend, job, OutcomeKind.DEAD, error=error)
    assert (await get_one(backend, job.id)).error == error
