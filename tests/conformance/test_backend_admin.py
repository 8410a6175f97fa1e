"""Backend conformance: a person's actions, reads, stats, maintenance and locks."""

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
    IdsParams,
    JobFilter,
    LockParams,
    OutcomeKind,
    ProgressParams,
    ProgressUpdate,
    PruneParams,
    PurgeParams,
    QueryParams,
    ReapParams,
)
from offload.records import JobRecord
from offload.states import JobState


async def _job_in_state(backend: Backend, state: JobState, **fields: object) -> JobRecord:
    """Enqueue one job on its own queue and drive it to ``state``."""
    queue = fields.pop("queue", f"q-{state.value}")
    if state is JobState.SCHEDULED:
        return await enqueue_one(backend, queue=queue, delay_s=600.0, **fields)
    record = await enqueue_one(backend, queue=queue, **fields)
    if state is JobState.QUEUED:
        return record
    job = await claim_one(backend, queues=[queue])
    if state is JobState.SUCCEEDED:
        await finish(backend, job, result=b"1")
    elif state is JobState.DEAD:
        await finish(backend, job, OutcomeKind.DEAD, error=BOOM)
    elif state is JobState.CANCELLED:
        await backend.cancel(IdsParams(ids=[job.id]))
    return await get_one(backend, job.id)


# -- cancel ------------------------------------------------------------------


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.SCHEDULED])
async def test_cancel_a_waiting_job(backend: Backend, clock, state: JobState) -> None:
    job = await _job_in_state(backend, state)
    clock.advance(2.0)
    (returned,) = await backend.cancel(IdsParams(ids=[job.id]))
    assert returned.id == job.id
    assert returned.state is JobState.CANCELLED
    stored = await get_one(backend, job.id)
    assert stored == returned
    assert stored.finished_at == at(clock.now)
    clock.advance(1000.0)
    assert await claim(backend, [job.queue]) == []


async def test_cancel_a_running_job_takes_the_lease_away(backend: Backend, clock) -> None:
    await enqueue_one(backend)
    job = await claim_one(backend, lease_s=10.0)
    (returned,) = await backend.cancel(IdsParams(ids=[job.id]))
    assert returned.state is JobState.CANCELLED

    assert (await heartbeat(backend, (job.id, job.delivery))).lost == [job.id]
    await backend.report_progress(
        ProgressParams(updates=[ProgressUpdate(id=job.id, delivery=job.delivery, progress=0.7)])
    )
    late = await finish(backend, job, OutcomeKind.SUCCEEDED, result=b'"done anyway"')
    assert late.rejected == [job.id]
    stored = await get_one(backend, job.id)
    assert stored.state is JobState.CANCELLED
    assert stored.result is None
    assert stored.progress == 0.0
    # Its old lease running out does not bring it back.
    clock.advance(20.0)
    assert await backend.reap_expired(ReapParams()) == []
    assert (await get_one(backend, job.id)).state is JobState.CANCELLED
    assert await claim(backend) == []


@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED])
async def test_cancel_leaves_a_finished_job_unchanged(
    backend: Backend, clock, state: JobState
) -> None:
    job = await _job_in_state(backend, state)
    clock.advance(5.0)
    (returned,) = await backend.cancel(IdsParams(ids=[job.id]))
    assert returned == job
    assert await get_one(backend, job.id) == job


async def test_cancel_ignores_unknown_ids_and_keeps_order(backend: Backend) -> None:
    a = await enqueue_one(backend)
    b = await enqueue_one(backend)
    returned = await backend.cancel(IdsParams(ids=[b.id, "no-such-job", a.id]))
    assert [r.id for r in returned] == [b.id, a.id]
    assert all(r.state is JobState.CANCELLED for r in returned)
    assert await backend.cancel(IdsParams(ids=["no-such-job"])) == []


# -- retry -------------------------------------------------------------------


@pytest.mark.parametrize("state", [JobState.DEAD, JobState.CANCELLED])
async def test_retry_requeues_a_dead_or_cancelled_job(
    backend: Backend, clock, state: JobState
) -> None:
    job = await _job_in_state(backend, state, max_attempts=2)
    clock.advance(30.0)
    (returned,) = await backend.retry(IdsParams(ids=[job.id]))
    assert returned.id == job.id
    assert returned.state is JobState.QUEUED
    assert returned.attempt == 0
    assert returned.crashes == 0
    assert returned.finished_at is None
    assert returned.run_at == at(clock.now)
    assert await get_one(backend, job.id) == returned
    again = await claim_one(backend, queues=[job.queue])
    assert again.id == job.id
    assert again.attempt == 1
    assert again.delivery == job.delivery + 1  # a delivery token is never reused


async def test_retry_resets_crashes_of_a_reaped_job(backend: Backend, clock) -> None:
    await enqueue_one(backend)
    await claim_one(backend, lease_s=10.0)
    clock.advance(11.0)
    (reaped,) = await backend.reap_expired(ReapParams(max_crashes=1))
    assert reaped.state is JobState.DEAD
    (returned,) = await backend.retry(IdsParams(ids=[reaped.id]))
    assert (returned.state, returned.crashes, returned.attempt) == (JobState.QUEUED, 0, 0)


@pytest.mark.parametrize(
    "state", [JobState.SUCCEEDED, JobState.QUEUED, JobState.SCHEDULED, JobState.RUNNING]
)
async def test_retry_leaves_other_states_unchanged(
    backend: Backend, clock, state: JobState
) -> None:
    job = await _job_in_state(backend, state)
    clock.advance(5.0)
    (returned,) = await backend.retry(IdsParams(ids=[job.id]))
    assert returned == job
    assert await get_one(backend, job.id) == job


async def test_retry_ignores_unknown_ids(backend: Backend) -> None:
    job = await _job_in_state(backend, JobState.DEAD)
    returned = await backend.retry(IdsParams(ids=["no-such-job", job.id]))
    assert [(r.id, r.state) for r in returned] == [(job.id, JobState.QUEUED)]


async def test_retry_does_not_steal_a_unique_key_held_by_a_newer_job(backend: Backend) -> None:
    old = await _job_in_state(backend, JobState.CANCELLED, key="once", queue="k")
    (newer,) = await enqueue(backend, new_job(key="once", queue="k"))
    assert newer.id != old.id
    (returned,) = await backend.retry(IdsParams(ids=[old.id]))
    assert returned.state is JobState.CANCELLED
    assert (await get_one(backend, old.id)).state is JobState.CANCELLED
    assert (await get_one(backend, newer.id)).state is JobState.QUEUED
    (dup,) = await enqueue(backend, new_job(key="once", queue="k"))
    assert dup.id == newer.id


async def test_a_retried_job_holds_its_key_again(backend: Backend) -> None:
    old = await _job_in_state(backend, JobState.DEAD, key="once", queue="k")
    await backend.retry(IdsParams(ids=[old.id]))
    (dup,) = await enqueue(backend, new_job(key="once", queue="k"))
    assert dup.id == old.id


# -- get ---------------------------------------------------------------------


async def test_get_follows_the_requested_order_and_skips_unknown(backend: Backend) -> None:
    a, b, c = [await enqueue_one(backend) for _ in range(3)]
    found = await get(backend, c.id, "missing-1", a.id, b.id, "missing-2")
    assert [r.id for r in found] == [c.id, a.id, b.id]
    assert await get(backend) == []
    assert await get(backend, "missing") == []


# -- query -------------------------------------------------------------------


async def _query_ids(backend: Backend, **filter_fields: object) -> list[str]:
    page = await backend.query(QueryParams(filter=JobFilter(**filter_fields), limit=1000))  # type: ignore[arg-type]
    assert page.next_cursor is None
    return [j.id for j in page.jobs]


async def test_query_filters(backend: Backend) -> None:
    j1 = await enqueue_one(backend, queue="docs", task="convert", owner="alice", batch="b1")
    j2 = await enqueue_one(backend, queue="docs", task="convert", owner="bob", batch="b1")
    j3 = await enqueue_one(backend, queue="mail", task="send", owner="alice")
    j4 = await enqueue_one(backend, queue="docs", task="zip", owner="alice", batch="b2")
    j5 = await enqueue_one(backend, queue="mail", task="send", owner="bob", delay_s=60.0)
    running = await claim_one(backend, queues=["docs"])
    assert running.id == j1.id
    await finish(backend, await claim_one(backend, queues=["mail"]), result=b"1")  # j3

    everything = await _query_ids(backend)
    assert sorted(everything) == sorted([j1.id, j2.id, j3.id, j4.id, j5.id])
    assert await _query_ids(backend, queue="docs") == [j4.id, j2.id, j1.id]
    assert await _query_ids(backend, task="send") == [j5.id, j3.id]
    assert await _query_ids(backend, owner="alice") == [j4.id, j3.id, j1.id]
    assert await _query_ids(backend, batch="b1") == [j2.id, j1.id]
    assert await _query_ids(backend, states=[JobState.RUNNING]) == [j1.id]
    assert await _query_ids(backend, states=[JobState.SUCCEEDED]) == [j3.id]
    assert await _query_ids(backend, states=[JobState.SCHEDULED]) == [j5.id]
    assert await _query_ids(backend, states=[JobState.QUEUED, JobState.SCHEDULED]) == [
        j5.id,
        j4.id,
        j2.id,
    ]
    assert await _query_ids(backend, states=[JobState.DEAD]) == []
    assert await _query_ids(backend, queue="docs", owner="alice") == [j4.id, j1.id]
    assert await _query_ids(
        backend, queue="docs", task="convert", owner="bob", batch="b1", states=[JobState.QUEUED]
    ) == [j2.id]
    assert await _query_ids(backend, queue="nowhere") == []


async def test_query_returns_newest_first_with_full_records(backend: Backend) -> None:
    records = [await enqueue_one(backend, meta={"i": i}) for i in range(6)]
    page = await backend.query(QueryParams())
    assert [j.id for j in page.jobs] == [r.id for r in reversed(records)]
    assert page.jobs == list(reversed(records))
    assert page.next_cursor is None


@pytest.mark.parametrize(("total", "limit"), [(23, 5), (20, 5), (7, 1), (3, 50)])
async def test_query_pages_visit_every_job_once(backend: Backend, total: int, limit: int) -> None:
    records = await enqueue(backend, *[new_job() for _ in range(total)])
    await enqueue(backend, *[new_job(queue="other") for _ in range(4)])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await backend.query(
            QueryParams(filter=JobFilter(queue="default"), cursor=cursor, limit=limit)
        )
        pages += 1
        assert pages <= total + 1, "pagination does not end"
        assert 0 < len(page.jobs) <= limit
        seen += [j.id for j in page.jobs]
        if page.next_cursor is None:
            break
        assert len(page.jobs) == limit
        cursor = page.next_cursor
    assert seen == sorted((r.id for r in records), reverse=True)
    assert pages == -(-total // limit)


@pytest.mark.parametrize("limit", [1, 4, 50])
@pytest.mark.parametrize(
    "flt",
    [JobFilter(), JobFilter(queue="default"), JobFilter(owner="ann"), JobFilter(text="needle"),
     JobFilter(created_after=0.0), JobFilter(states=[JobState.QUEUED], owner="ann")],
    ids=["all", "queue", "owner", "text", "time", "state-owner"],
)  # fmt: skip
async def test_query_pages_oldest_first(backend: Backend, flt: JobFilter, limit: int) -> None:
    """Oldest first visits the same jobs as newest first, the other way round, each once."""
    await enqueue(backend, *[new_job(owner="ann", payload=b'["needle"]') for _ in range(9)])
    await enqueue(backend, *[new_job(queue="other", owner="ann", payload=b'["needle"]')
                             for _ in range(3)])  # fmt: skip
    await enqueue(backend, *[new_job(owner="bob") for _ in range(2)])

    async def walk(oldest_first: bool) -> list[str]:
        seen: list[str] = []
        cursor = None
        for _ in range(100):
            page = await backend.query(QueryParams(filter=flt, cursor=cursor, limit=limit,
                                                   oldest_first=oldest_first))  # fmt: skip
            seen += [j.id for j in page.jobs]
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor
        raise AssertionError("pagination does not end")

    newest, oldest = await walk(False), await walk(True)
    assert newest and oldest == list(reversed(newest))
    assert len(set(oldest)) == len(oldest)


# -- stats -------------------------------------------------------------------


def _counts(stats: list, queue: str) -> dict[str, int]:
    (entry,) = [s for s in stats if s.queue == queue]
    return {state.value: entry.counts.get(state.value, 0) for state in JobState}


async def test_stats_counts_per_queue_and_state(backend: Backend, clock) -> None:
    assert await backend.stats() == []
    for _ in range(3):
        await enqueue_one(backend, queue="docs")
    await enqueue_one(backend, queue="docs", delay_s=60.0)
    await enqueue_one(backend, queue="mail")
    await enqueue_one(backend, queue="mail")
    a, b = await claim(backend, ["docs"], limit=2)
    await finish(backend, a, result=b"1")
    (m, _) = await claim(backend, ["mail"], limit=2)
    await finish(backend, m, OutcomeKind.DEAD, error=BOOM)
    await backend.cancel(IdsParams(ids=[b.id]))

    stats = await backend.stats()
    assert sorted(s.queue for s in stats) == ["docs", "mail"]
    zero = {s.value: 0 for s in JobState}
    assert _counts(stats, "docs") == {
        **zero,
        "queued": 1,
        "scheduled": 1,
        "succeeded": 1,
        "cancelled": 1,
    }
    assert _counts(stats, "mail") == {**zero, "running": 1, "dead": 1}


async def test_stats_oldest_ready_age(backend: Backend, clock) -> None:
    await enqueue_one(backend, queue="docs")
    clock.advance(10.0)
    await enqueue_one(backend, queue="docs")
    await enqueue_one(backend, queue="later", delay_s=100.0)
    await enqueue_one(backend, queue="busy")
    await claim(backend, ["busy"])
    clock.advance(20.0)
    by_queue = {s.queue: s for s in await backend.stats()}
    assert by_queue["docs"].oldest_ready_age_s == at(30.0)
    assert by_queue["later"].oldest_ready_age_s is None  # not due yet
    assert by_queue["busy"].oldest_ready_age_s is None  # nothing waiting
    clock.advance(90.0)  # the scheduled job fell due 10 s ago, even if not promoted
    by_queue = {s.queue: s for s in await backend.stats()}
    assert by_queue["later"].oldest_ready_age_s == at(10.0)
    assert by_queue["docs"].oldest_ready_age_s == at(120.0)


async def test_stats_oldest_ready_age_looks_past_priorities(backend: Backend, clock) -> None:
    await enqueue_one(backend, queue="mixed", priority=-100)  # waits longest, claimed last
    clock.advance(40.0)
    await enqueue_one(backend, queue="mixed", priority=100)
    await enqueue_one(backend, queue="mixed", priority=7)
    clock.advance(5.0)
    await enqueue_one(backend, queue="mixed")
    by_queue = {s.queue: s for s in await backend.stats()}
    assert by_queue["mixed"].oldest_ready_age_s == at(45.0)
    await claim(backend, ["mixed"], limit=3)  # leaves the priority -100 job
    by_queue = {s.queue: s for s in await backend.stats()}
    assert by_queue["mixed"].oldest_ready_age_s == at(45.0)


async def test_stats_finished_last_minute(backend: Backend, clock) -> None:
    for _ in range(3):
        await enqueue_one(backend, queue="docs")
    first, second, third = await claim(backend, ["docs"])
    await finish(backend, first, result=b"1")
    clock.advance(40.0)
    await finish(backend, second, OutcomeKind.DEAD, error=BOOM)
    await finish(backend, third, OutcomeKind.RETRY, error=BOOM, retry_delay_s=1000.0)
    (docs,) = await backend.stats()
    assert docs.finished_last_minute == 2  # a retry is not finished
    clock.advance(30.0)  # the first is now 70 s old
    (docs,) = await backend.stats()
    assert docs.finished_last_minute == 1
    clock.advance(31.0)
    (docs,) = await backend.stats()
    assert docs.finished_last_minute == 0


# -- promote_due, reap_expired -------------------------------------------------


async def test_promote_due_moves_due_scheduled_jobs_to_queued(backend: Backend, clock) -> None:
    soon = await enqueue_one(backend, delay_s=10.0)
    later = await enqueue_one(backend, delay_s=100.0)
    assert await backend.promote_due() == 0
    clock.advance(10.5)
    assert await backend.promote_due() == 1
    assert (await get_one(backend, soon.id)).state is JobState.QUEUED
    assert (await get_one(backend, later.id)).state is JobState.SCHEDULED
    assert await backend.promote_due() == 0
    assert [j.id for j in await claim(backend)] == [soon.id]


async def test_reap_requeues_an_expired_lease(backend: Backend, clock) -> None:
    await enqueue_one(backend)
    await enqueue_one(backend, lease_s=100.0)
    expiring, long_lease = await claim(backend, lease_s=10.0, worker="w1")
    clock.advance(10.5)
    reaped = await backend.reap_expired(ReapParams(max_crashes=3))
    assert [(r.id, r.state) for r in reaped] == [(expiring.id, JobState.QUEUED)]
    stored = await get_one(backend, expiring.id)
    assert stored.state is JobState.QUEUED
    assert stored.crashes == 1
    assert stored.error is not None
    assert stored.error.type == "WorkerLost"
    assert stored.worker is None
    assert stored.lease_until is None
    assert stored.finished_at is None
    assert stored.attempt == 1  # the lost attempt counts
    assert (await get_one(backend, long_lease.id)).state is JobState.RUNNING
    assert await backend.reap_expired(ReapParams()) == []
    assert [j.id for j in await claim(backend)] == [expiring.id]


async def test_reap_leaves_unexpired_leases_alone(backend: Backend, clock) -> None:
    await enqueue_one(backend)
    job = await claim_one(backend, lease_s=10.0)
    clock.advance(9.0)
    assert await backend.reap_expired(ReapParams()) == []
    assert await get_one(backend, job.id) == job


async def test_reap_quarantines_a_poison_job_after_max_crashes(backend: Backend, clock) -> None:
    job = await enqueue_one(backend, max_attempts=10)
    for crash in range(1, 4):
        await claim_one(backend, lease_s=10.0)
        clock.advance(11.0)
        (reaped,) = await backend.reap_expired(ReapParams(max_crashes=3))
        expected = JobState.DEAD if crash == 3 else JobState.QUEUED
        assert (reaped.id, reaped.state) == (job.id, expected)
        assert (await get_one(backend, job.id)).crashes == crash
    stored = await get_one(backend, job.id)
    assert stored.state is JobState.DEAD
    assert stored.finished_at == at(clock.now)
    assert stored.error is not None
    assert stored.error.type == "WorkerLost"
    assert await claim(backend) == []


# -- prune, purge ---------------------------------------------------------------


async def test_prune_removes_only_terminal_jobs_finished_before_the_cutoff(
    backend: Backend, clock
) -> None:
    old_ok = await _job_in_state(backend, JobState.SUCCEEDED)
    old_dead = await _job_in_state(backend, JobState.DEAD)
    old_cancelled = await _job_in_state(backend, JobState.CANCELLED)
    cutoff = clock.advance(100.0)
    new_ok = await _job_in_state(backend, JobState.SUCCEEDED)
    queued = await _job_in_state(backend, JobState.QUEUED)
    scheduled = await _job_in_state(backend, JobState.SCHEDULED)
    running = await _job_in_state(backend, JobState.RUNNING)
    clock.advance(100.0)

    assert await backend.prune(PruneParams(finished_before=cutoff)) == 3
    left = await get(
        backend,
        old_ok.id,
        old_dead.id,
        old_cancelled.id,
        new_ok.id,
        queued.id,
        scheduled.id,
        running.id,
    )
    assert [r.id for r in left] == [new_ok.id, queued.id, scheduled.id, running.id]
    assert await backend.prune(PruneParams(finished_before=cutoff)) == 0


async def test_prune_honours_its_states(backend: Backend, clock) -> None:
    ok = await _job_in_state(backend, JobState.SUCCEEDED)
    dead = await _job_in_state(backend, JobState.DEAD)
    cutoff = clock.advance(10.0)
    assert await backend.prune(PruneParams(finished_before=cutoff, states=[JobState.DEAD])) == 1
    assert [r.id for r in await get(backend, ok.id, dead.id)] == [ok.id]


async def test_purge_by_states_and_queue(backend: Backend) -> None:
    docs_dead = await _job_in_state(backend, JobState.DEAD, queue="docs")
    docs_q = [await enqueue_one(backend, queue="docs") for _ in range(3)]
    mail_q = [await enqueue_one(backend, queue="mail") for _ in range(2)]

    assert await backend.purge(PurgeParams(states=[JobState.QUEUED], queue="docs")) == 3
    assert await get(backend, *[j.id for j in docs_q]) == []
    assert len(await get(backend, *[j.id for j in mail_q])) == 2
    assert len(await get(backend, docs_dead.id)) == 1
    assert await backend.purge(PurgeParams(states=[JobState.QUEUED, JobState.DEAD])) == 3
    assert await get(backend, docs_dead.id, *[j.id for j in mail_q]) == []
    assert await backend.purge(PurgeParams(states=[])) == 0


async def test_purge_frees_unique_keys(backend: Backend) -> None:
    held = await enqueue_one(backend, key="once")
    assert await backend.purge(PurgeParams(states=[JobState.QUEUED])) == 1
    (fresh,) = await enqueue(backend, new_job(key="once"))
    assert fresh.id != held.id
    assert fresh.state is JobState.QUEUED


# -- locks ---------------------------------------------------------------------


def _lock(owner: str, name: str = "scheduler", ttl_s: float = 10.0) -> LockParams:
    return LockParams(name=name, owner=owner, ttl_s=ttl_s)


async def test_lock_is_exclusive(backend: Backend) -> None:
    assert await backend.lock(_lock("a")) is True
    assert await backend.lock(_lock("b")) is False
    assert await backend.lock(_lock("b", name="cron")) is True  # another name is another lock
    assert await backend.lock(_lock("a", name="cron")) is False


async def test_lock_is_renewed_by_its_owner(backend: Backend, clock) -> None:
    assert await backend.lock(_lock("a"))
    clock.advance(8.0)
    assert await backend.lock(_lock("a"))  # renewed: now held until +18
    clock.advance(8.0)  # past the first ttl
    assert await backend.lock(_lock("b")) is False
    clock.advance(3.0)  # past the renewed ttl
    assert await backend.lock(_lock("b")) is True


async def test_an_expired_lock_is_taken_over(backend: Backend, clock) -> None:
    assert await backend.lock(_lock("a"))
    clock.advance(10.5)
    assert await backend.lock(_lock("b")) is True
    assert await backend.lock(_lock("a")) is False


async def test_unlock_only_by_the_owner(backend: Backend) -> None:
    assert await backend.lock(_lock("a"))
    await backend.unlock(_lock("b"))
    assert await backend.lock(_lock("b")) is False
    await backend.unlock(_lock("a"))
    assert await backend.lock(_lock("b")) is True
    await backend.unlock(_lock("a", name="never-taken"))  # no error


async def test_leases_use_the_backend_clock(backend: Backend, clock) -> None:
    assert await backend.now() == at(clock.now)
    await enqueue_one(backend)
    job = await claim_one(backend)
    assert job.lease_until == at(await backend.now() + LEASE_S)
