"""``Outcome.follow_ups`` on Redis: stored by the same script as the fenced finish, only
when that outcome is taken; a follow-up whose id exists is skipped."""

from __future__ import annotations

import math

import pytest

from offload.backends.base import (
    ClaimParams,
    EnqueueParams,
    FinishParams,
    IdsParams,
    Outcome,
    OutcomeKind,
    ValueRejected,
)
from offload.backends.redis import RedisBackend
from offload.states import JobState
from test_redis_values import QUEUE, _claimed, _get, _job, _run


def test_a_taken_outcome_stores_its_follow_up_ready_to_claim(redis_url: str) -> None:
    async def body(backend: RedisBackend) -> None:
        step = await _claimed(backend)
        nxt, later = _job(), _job(delay_s=3600.0)
        done = Outcome(
            id=step.id, delivery=step.delivery, kind=OutcomeKind.SUCCEEDED, follow_ups=[nxt, later]
        )
        assert (await backend.finish(FinishParams(outcomes=[done]))).rejected == []
        assert (await _get(backend, step.id)).state is JobState.SUCCEEDED
        assert (await _get(backend, later.id)).state is JobState.SCHEDULED
        claimed = await backend.claim(ClaimParams(queues=[QUEUE], limit=5, worker="w", lease_s=9))
        assert [j.id for j in claimed] == [nxt.id]

    _run(redis_url, body)


def test_a_refused_outcome_stores_no_follow_up(redis_url: str) -> None:
    async def body(backend: RedisBackend) -> None:
        step = await _claimed(backend)
        await backend.cancel(IdsParams(ids=[step.id]))  # the lease is no longer held
        nxt = _job()
        done = Outcome(
            id=step.id, delivery=step.delivery, kind=OutcomeKind.SUCCEEDED, follow_ups=[nxt]
        )
        assert (await backend.finish(FinishParams(outcomes=[done]))).rejected == [step.id]
        assert await backend.get(IdsParams(ids=[nxt.id])) == []

    _run(redis_url, body)


def test_a_follow_up_already_stored_is_skipped_and_the_outcome_taken(redis_url: str) -> None:
    async def body(backend: RedisBackend) -> None:
        step = await _claimed(backend)
        existing = _job(priority=7)
        await backend.enqueue(EnqueueParams(jobs=[existing]))
        again = _job(id=existing.id, priority=1)
        done = Outcome(
            id=step.id, delivery=step.delivery, kind=OutcomeKind.SUCCEEDED, follow_ups=[again]
        )
        assert (await backend.finish(FinishParams(outcomes=[done]))).rejected == []
        assert (await _get(backend, existing.id)).priority == 7

    _run(redis_url, body)


def test_a_follow_up_the_store_cannot_hold_refuses_the_finish_before_any_write(
    redis_url: str,
) -> None:
    async def body(backend: RedisBackend) -> None:
        step = await _claimed(backend)
        done = Outcome(
            id=step.id,
            delivery=step.delivery,
            kind=OutcomeKind.SUCCEEDED,
            follow_ups=[_job(delay_s=math.nan)],
        )
        with pytest.raises(ValueRejected, match="delay_s"):
            await backend.finish(FinishParams(outcomes=[done]))
        assert (await _get(backend, step.id)).state is JobState.RUNNING

    _run(redis_url, body)
