"""Backend conformance: every attempt is kept on its job, and live workers are listed."""

from __future__ import annotations

from conformance_helpers import (
    BOOM,
    at,
    claim,
    claim_one,
    enqueue,
    enqueue_one,
    finish,
    get_one,
    new_job,
)

from offload.backends.base import Backend, IdsParams, OutcomeKind, ReapParams, WorkerBeatParams
from offload.records import MAX_ATTEMPTS_KEPT, WORKER_LOST, AttemptOutcome, WorkerInfo
from offload.states import JobState


async def test_each_ended_attempt_is_kept_with_worker_times_outcome_and_error(
    backend: Backend, clock: object
) -> None:
    job = await enqueue_one(backend, max_attempts=3, lease_s=5)
    first = await claim_one(backend, worker="w1")
    clock.advance(2)  # type: ignore[attr-defined]
    await finish(backend, first, OutcomeKind.RETRY, error=BOOM)
    second = await claim_one(backend, worker="w2")
    clock.advance(6)  # type: ignore[attr-defined]
    await backend.reap_expired(ReapParams(max_crashes=3))
    third = await claim_one(backend, worker="w3")
    await finish(backend, third, result=b"1")
    attempts = (await get_one(backend, job.id)).attempts
    assert [(a.number, a.worker, a.outcome) for a in attempts] == [
        (1, "w1", AttemptOutcome.FAILED),
        (2, "w2", AttemptOutcome.LOST),
        (3, "w3", AttemptOutcome.SUCCEEDED),
    ]
    assert attempts[0].started_at == at(first.started_at or 0)
    assert attempts[0].ended_at == at((first.started_at or 0) + 2)
    assert attempts[0].error == BOOM
    assert attempts[1].started_at == at(second.started_at or 0)
    assert attempts[1].error == WORKER_LOST
    assert attempts[2].error is None


async def test_cancelling_a_running_job_ends_its_attempt(backend: Backend) -> None:
    job = await enqueue_one(backend)
    await claim_one(backend, worker="w9")
    await backend.cancel(IdsParams(ids=[job.id]))
    (attempt,) = (await get_one(backend, job.id)).attempts
    assert (attempt.number, attempt.worker, attempt.outcome) == (1, "w9", AttemptOutcome.CANCELLED)


async def test_cancelling_a_queued_job_adds_no_attempt(backend: Backend) -> None:
    job = await enqueue_one(backend)
    await backend.cancel(IdsParams(ids=[job.id]))
    assert (await get_one(backend, job.id)).attempts == []


async def test_released_and_deferred_attempts_are_kept_but_not_counted(backend: Backend) -> None:
    job = await enqueue_one(backend)
    await finish(backend, await claim_one(backend), OutcomeKind.RELEASE)
    await finish(backend, await claim_one(backend), OutcomeKind.DEFER, retry_delay_s=0)
    stored = await get_one(backend, job.id)
    assert [a.outcome for a in stored.attempts] == [
        AttemptOutcome.RELEASED, AttemptOutcome.DEFERRED]  # fmt: skip
    assert [a.number for a in stored.attempts] == [1, 1]
    assert stored.attempt == 0


async def test_history_keeps_only_the_newest_attempts(backend: Backend) -> None:
    job = await enqueue_one(backend)
    for _ in range(MAX_ATTEMPTS_KEPT + 5):
        await finish(backend, await claim_one(backend), OutcomeKind.DEFER, retry_delay_s=0)
    attempts = (await get_one(backend, job.id)).attempts
    assert len(attempts) == MAX_ATTEMPTS_KEPT


def _worker(worker_id: str, running: list[str] | None = None) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        host="host-a",
        pid=123,
        queues=["default", "docs"],
        concurrency=8,
        started_at=1_700_000_000.0,
        running=running or [],
    )


async def test_live_workers_are_listed_and_drop_out_after_their_ttl(
    backend: Backend, clock: object
) -> None:
    await backend.beat_worker(WorkerBeatParams(worker=_worker("w1", ["j1"]), ttl_s=30))
    await backend.beat_worker(WorkerBeatParams(worker=_worker("w2"), ttl_s=10))
    listed = await backend.workers()
    assert [w.id for w in listed] == ["w1", "w2"]
    one = listed[0]
    assert (one.host, one.pid, one.queues, one.concurrency, one.running) == (
        "host-a", 123, ["default", "docs"], 8, ["j1"])  # fmt: skip
    assert one.last_seen == at(clock.time())  # type: ignore[attr-defined]
    clock.advance(15)  # type: ignore[attr-defined]
    assert [w.id for w in await backend.workers()] == ["w1"]
    await backend.beat_worker(WorkerBeatParams(worker=_worker("w1", []), ttl_s=30))
    (again,) = await backend.workers()
    assert again.running == []
    assert again.last_seen == at(clock.time())  # type: ignore[attr-defined]
    await backend.remove_worker(IdsParams(ids=["w1"]))
    assert await backend.workers() == []


async def test_claims_and_finishes_leave_history_of_many_jobs_apart(backend: Backend) -> None:
    records = await enqueue(backend, *[new_job() for _ in range(5)])
    claimed = await claim(backend, worker="w1")
    for job in claimed:
        await finish(backend, job)
    for record in records:
        stored = await get_one(backend, record.id)
        assert stored.state is JobState.SUCCEEDED
        assert [a.number for a in stored.attempts] == [1]
