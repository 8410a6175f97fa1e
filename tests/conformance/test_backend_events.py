"""Backend conformance: every store step pushes its events to subscribers, in order.

A subscriber sees the steps made after it entered the stream, from this process or
another one sharing the store (each store's own tests cover the other process).
"""

from __future__ import annotations

import asyncio

from conformance_helpers import (
    BOOM,
    at,
    claim,
    claim_one,
    enqueue,
    enqueue_one,
    finish,
    new_job,
)

from offload.backends.base import (
    Backend,
    EventStream,
    FinishParams,
    IdsParams,
    Outcome,
    OutcomeKind,
    ProgressParams,
    ProgressUpdate,
    PublishParams,
    ReapParams,
)
from offload.records import WORKER_LOST, EventKind, JobEvent
from offload.states import JobState

#: Long enough for any store on a loaded 2-core machine; the tests wait for events, not time.
WAIT_S = 10.0


async def _next(stream: EventStream, wanted: int) -> list[JobEvent]:
    """The next ``wanted`` events (across steps), or fail after ``WAIT_S``."""
    got: list[JobEvent] = []
    iterator = aiter(stream)
    async with asyncio.timeout(WAIT_S):
        while len(got) < wanted:
            got.extend(await anext(iterator))
    assert len(got) == wanted, f"more events than expected: {got}"
    return got


async def test_enqueue_claim_progress_and_success_are_pushed_in_order(
    backend: Backend, clock: object
) -> None:
    async with backend.subscribe() as stream:
        job = await enqueue_one(backend, owner="alice", batch="b1")
        (enqueued,) = await _next(stream, 1)
        assert enqueued.kind is EventKind.ENQUEUED
        assert (enqueued.id, enqueued.state, enqueued.owner, enqueued.batch) == (
            job.id, JobState.QUEUED, "alice", "b1")  # fmt: skip
        assert (enqueued.task, enqueued.queue) == (job.task, job.queue)
        assert enqueued.at == at(job.created_at)

        running = await claim_one(backend, worker="w7")
        (started,) = await _next(stream, 1)
        assert (started.kind, started.state, started.worker, started.attempt) == (
            EventKind.STARTED, JobState.RUNNING, "w7", 1)  # fmt: skip

        update = ProgressUpdate(id=job.id, delivery=running.delivery, progress=0.5, message="p3")
        await backend.report_progress(ProgressParams(updates=[update]))
        (progress,) = await _next(stream, 1)
        assert (progress.kind, progress.progress, progress.message) == (
            EventKind.PROGRESS, 0.5, "p3")  # fmt: skip

        await finish(backend, running, result=b'"ok"')
        (done,) = await _next(stream, 1)
        assert (done.kind, done.state, done.progress, done.worker) == (
            EventKind.SUCCEEDED, JobState.SUCCEEDED, 1.0, "w7")  # fmt: skip


async def test_a_subscriber_sees_only_steps_after_it_entered(backend: Backend) -> None:
    await enqueue_one(backend)
    async with backend.subscribe() as stream:
        later = await enqueue_one(backend)
        (event,) = await _next(stream, 1)
        assert event.id == later.id


async def test_failures_carry_the_error_message(backend: Backend) -> None:
    await enqueue(backend, new_job(max_attempts=2))
    async with backend.subscribe() as stream:
        first = await claim_one(backend)
        await finish(backend, first, OutcomeKind.RETRY, error=BOOM, retry_delay_s=0)
        _, retrying = await _next(stream, 2)
        assert (retrying.kind, retrying.state, retrying.message) == (
            EventKind.RETRYING, JobState.SCHEDULED, "boom")  # fmt: skip
        second = await claim_one(backend)
        await finish(backend, second, OutcomeKind.DEAD, error=BOOM)
        _, dead = await _next(stream, 2)
        assert (dead.kind, dead.state, dead.message, dead.attempt) == (
            EventKind.DEAD, JobState.DEAD, "boom", 2)  # fmt: skip


async def test_release_and_defer_are_requeued(backend: Backend) -> None:
    await enqueue_one(backend)
    async with backend.subscribe() as stream:
        job = await claim_one(backend)
        await finish(backend, job, OutcomeKind.RELEASE)
        _, released = await _next(stream, 2)
        assert (released.kind, released.state) == (EventKind.REQUEUED, JobState.QUEUED)
        job = await claim_one(backend)
        await finish(backend, job, OutcomeKind.DEFER, retry_delay_s=60)
        _, deferred = await _next(stream, 2)
        assert (deferred.kind, deferred.state) == (EventKind.REQUEUED, JobState.SCHEDULED)


async def test_a_fenced_out_finish_pushes_nothing(backend: Backend) -> None:
    await enqueue_one(backend)
    job = await claim_one(backend)
    async with backend.subscribe() as stream:
        await backend.cancel(IdsParams(ids=[job.id]))
        (cancelled,) = await _next(stream, 1)
        assert (cancelled.kind, cancelled.state) == (EventKind.CANCELLED, JobState.CANCELLED)
        await finish(backend, job)  # refused: the lease is gone
        marker = await enqueue_one(backend)
        (event,) = await _next(stream, 1)
        assert event.id == marker.id, "a refused finish must not push an event"


async def test_cancel_pushes_only_jobs_it_changed(backend: Backend) -> None:
    queued = await enqueue_one(backend)
    await enqueue_one(backend, queue="other")
    async with backend.subscribe() as stream:
        await backend.cancel(IdsParams(ids=[queued.id]))
        await backend.cancel(IdsParams(ids=[queued.id]))  # already cancelled: nothing new
        await backend.retry(IdsParams(ids=[queued.id]))
        cancelled, retried = await _next(stream, 2)
        assert cancelled.kind is EventKind.CANCELLED
        assert (retried.kind, retried.state, retried.id) == (
            EventKind.ENQUEUED, JobState.QUEUED, queued.id)  # fmt: skip


async def test_the_reaper_pushes_requeued_then_dead(backend: Backend, clock: object) -> None:
    job = await enqueue_one(backend, lease_s=5)
    async with backend.subscribe() as stream:
        for expected in (EventKind.REQUEUED, EventKind.DEAD):
            await claim(backend)
            clock.advance(6)  # type: ignore[attr-defined]
            await backend.reap_expired(ReapParams(max_crashes=2))
            _, reaped = await _next(stream, 2)
            assert (reaped.kind, reaped.id, reaped.message) == (
                expected, job.id, WORKER_LOST.message)  # fmt: skip


async def test_follow_ups_are_pushed_with_the_finish(backend: Backend) -> None:
    await enqueue_one(backend)
    job = await claim_one(backend)
    follow = new_job(queue="next")
    async with backend.subscribe() as stream:
        outcome = Outcome(
            id=job.id, delivery=job.delivery, kind=OutcomeKind.SUCCEEDED, follow_ups=[follow]
        )
        await backend.finish(FinishParams(outcomes=[outcome]))
        done, stored = await _next(stream, 2)
        assert done.kind is EventKind.SUCCEEDED
        assert (stored.kind, stored.id, stored.queue) == (EventKind.ENQUEUED, follow.id, "next")


async def test_delete_and_publish_are_pushed(backend: Backend) -> None:
    job = await enqueue_one(backend)
    async with backend.subscribe() as stream:
        assert await backend.delete(IdsParams(ids=[job.id])) == [job.id]
        paused = JobEvent(kind=EventKind.QUEUE_PAUSED, queue="docs", at=1.0)
        await backend.publish(PublishParams(events=[paused]))
        deleted, published = await _next(stream, 2)
        assert (deleted.kind, deleted.id) == (EventKind.DELETED, job.id)
        assert published == paused


async def test_one_step_of_many_jobs_comes_whole_and_in_order(backend: Backend) -> None:
    async with backend.subscribe() as stream:
        records = await enqueue(backend, *[new_job() for _ in range(50)])
        events = await _next(stream, 50)
        assert [e.id for e in events] == [r.id for r in records]


async def test_two_subscribers_each_get_every_event(backend: Backend) -> None:
    async with backend.subscribe() as one, backend.subscribe() as two:
        job = await enqueue_one(backend)
        assert [e.id for e in await _next(one, 1)] == [job.id]
        assert [e.id for e in await _next(two, 1)] == [job.id]
