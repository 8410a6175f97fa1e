"""Backend conformance: ``wait`` wake-ups and the blocking facade.

``wait`` runs on real time, so these tests use small real timeouts. They never
check how fast something was: a long ``timeout_s`` with a shorter outer guard
only turns "wait never woke up" into a failure instead of a hang.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from conformance_helpers import (
    LEASE_S,
    QUEUE,
    at,
    claim,
    claim_one,
    enqueue_one,
    get_one,
    new_job,
)

from offload.backends.base import (
    Backend,
    ClaimParams,
    EnqueueParams,
    IdsParams,
    JobFilter,
    PurgeParams,
    QueryParams,
    WaitParams,
)
from offload.states import JobState

#: The outer guard: far shorter than the waits' own timeout, far longer than a wake-up.
GUARD_S = 20.0
LONG_WAIT_S = 120.0


async def _wait(backend: Backend, timeout_s: float, queues: list[str] | None = None) -> None:
    params = WaitParams(queues=queues or [QUEUE], timeout_s=timeout_s)
    try:
        await asyncio.wait_for(backend.wait(params), GUARD_S)
    except TimeoutError:
        pytest.fail(f"wait({timeout_s=}) did not return within the {GUARD_S} s guard")


async def test_wait_wakes_up_when_another_thread_enqueues(backend: Backend) -> None:
    wait_returned = threading.Event()
    seen: dict[str, bool] = {}
    job = new_job()

    def producer() -> None:
        time.sleep(0.05)  # let the waiter block first; the assertions hold either way
        seen["waiter_still_blocked"] = not wait_returned.is_set()
        backend.blocking.enqueue(EnqueueParams(jobs=[job]))

    thread = threading.Thread(target=producer)
    thread.start()
    try:
        await _wait(backend, LONG_WAIT_S)
    finally:
        wait_returned.set()
        await asyncio.to_thread(thread.join)
    assert seen == {"waiter_still_blocked": True}  # it did not return before the enqueue
    assert (await claim_one(backend)).id == job.id  # ... and it returned with work ready


async def test_wait_returns_at_once_when_a_job_is_ready(backend: Backend) -> None:
    await enqueue_one(backend)
    await _wait(backend, LONG_WAIT_S)


async def test_wait_returns_at_once_when_a_scheduled_job_is_due(backend: Backend, clock) -> None:
    await enqueue_one(backend, delay_s=30.0)
    clock.advance(31.0)
    await _wait(backend, LONG_WAIT_S)
    assert len(await claim(backend)) == 1


async def test_wait_returns_by_timeout_without_ready_work(backend: Backend) -> None:
    later = await enqueue_one(backend, delay_s=3600.0)
    await enqueue_one(backend, queue="elsewhere")
    await _wait(backend, 0.05)
    await _wait(backend, 0.05, queues=["empty-queue"])
    assert (await get_one(backend, later.id)).state is JobState.SCHEDULED
    assert await claim(backend) == []


# -- the blocking facade --------------------------------------------------------


async def test_blocking_facade_sees_the_same_data(backend: Backend, clock) -> None:
    sync = backend.blocking
    assert await asyncio.to_thread(sync.now) == at(clock.now)

    # enqueue through the facade, read through async, and the other way round
    from_sync = new_job(queue="docs", owner="alice")
    (stored,) = await asyncio.to_thread(sync.enqueue, EnqueueParams(jobs=[from_sync]))
    assert await get_one(backend, from_sync.id) == stored
    from_async = await enqueue_one(backend, queue="docs", owner="alice")
    ids = IdsParams(ids=[from_sync.id, from_async.id])
    assert await asyncio.to_thread(sync.get, ids) == await backend.get(ids)

    query = QueryParams(filter=JobFilter(owner="alice"))
    assert await asyncio.to_thread(sync.query, query) == await backend.query(query)
    assert [j.id for j in (await asyncio.to_thread(sync.query, query)).jobs] == [
        from_async.id,
        from_sync.id,
    ]

    running = await claim_one(backend, queues=["docs"])
    assert await asyncio.to_thread(sync.get, IdsParams(ids=[running.id])) == [running]
    assert await asyncio.to_thread(sync.stats) == await backend.stats()

    # a person's actions through the facade are seen by the async side
    (cancelled,) = await asyncio.to_thread(sync.cancel, IdsParams(ids=[running.id]))
    assert cancelled.state is JobState.CANCELLED
    assert await get_one(backend, running.id) == cancelled
    (retried,) = await asyncio.to_thread(sync.retry, IdsParams(ids=[running.id]))
    assert retried.state is JobState.QUEUED
    assert await get_one(backend, running.id) == retried
    purged = await asyncio.to_thread(sync.purge, PurgeParams(states=[JobState.QUEUED]))
    assert purged == 2
    assert await backend.get(ids) == []
    assert await backend.stats() == await asyncio.to_thread(sync.stats)


# -- claiming on waking (WaitParams.claim) ----------------------------------------------


async def test_a_wait_with_a_claim_hands_over_or_leaves_every_job(backend: Backend) -> None:
    """A store may claim on waking (Redis) or not (None): either way no job is lost or
    claimed twice, and what it claimed is leased to the claim's worker."""
    jobs = [new_job() for _ in range(3)]

    def producer() -> None:
        time.sleep(0.05)
        backend.blocking.enqueue(EnqueueParams(jobs=jobs))

    thread = threading.Thread(target=producer)
    thread.start()
    params = WaitParams(
        queues=[QUEUE],
        timeout_s=LONG_WAIT_S,
        claim=ClaimParams(queues=[QUEUE], limit=2, worker="waker", lease_s=LONG_WAIT_S),
    )
    try:
        woke_with = await asyncio.wait_for(backend.wait(params), GUARD_S)
    finally:
        await asyncio.to_thread(thread.join)
    taken = woke_with or []
    assert len(taken) <= 2
    for record in taken:
        assert (record.state, record.worker, record.attempt) == (JobState.RUNNING, "waker", 1)
    rest = await claim(backend)
    assert sorted(j.id for j in [*taken, *rest]) == sorted(j.id for j in jobs)


async def test_a_wait_with_a_claim_that_times_out_takes_nothing(backend: Backend) -> None:
    later = await enqueue_one(backend, delay_s=3600.0)
    params = WaitParams(
        queues=[QUEUE],
        timeout_s=0.05,
        claim=ClaimParams(queues=[QUEUE], limit=5, worker="waker", lease_s=LEASE_S),
    )
    assert not await asyncio.wait_for(backend.wait(params), GUARD_S)  # None or []
    assert (await get_one(backend, later.id)).state is JobState.SCHEDULED
