"""How Redis keeps a job's attempts: the attempt that ended the job is told by the job's own
fields (one short field more, no key), the earlier ones by a list beside the hash.

The conformance suite checks what every store returns; these tests check what only this
layout can get wrong: which attempt lands where, errors that are no longer in the job's
fields, a person's retry that rewrites those fields, and the cap across both places.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis

from offload.backends.base import (
    ClaimParams,
    EnqueueParams,
    FinishParams,
    IdsParams,
    Outcome,
    OutcomeKind,
    ReapParams,
)
from offload.backends.redis import RedisBackend, redis_backend
from offload.records import MAX_ATTEMPTS_KEPT, WORKER_LOST, AttemptOutcome, ErrorInfo, JobRecord
from servers import RedisServer
from test_redis_lifetimes import START, Clock
from test_redis_values import QUEUE, _job

T = TypeVar("T")
E1 = ErrorInfo(type="ValueError", message="first", traceback="Traceback (first)")
E2 = ErrorInfo(type="KeyError", message="handed back", traceback=None)
LONG_WORKER = "a-host-name-long-enough-for-any-pod:123456:abcdef-and-more"


class Store:
    def __init__(self, server: RedisServer, prefix: str) -> None:
        self.url = server.url(prefix=prefix)
        self.prefix = prefix
        self.raw = redis.Redis(host="127.0.0.1", port=server.port)
        self.clock = Clock()

    def run(self, body: Callable[[RedisBackend], Awaitable[T]]) -> T:
        async def main() -> T:
            backend = redis_backend(self.url, clock=self.clock)
            try:
                return await body(backend)
            finally:
                await backend.close()

        return asyncio.run(main())

    def history_key(self, job_id: str) -> str:
        return f"{self.prefix}:q:{{{QUEUE}}}:a:{job_id}"

    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}:q:{{{QUEUE}}}:j:{job_id}"


async def _claim(backend: RedisBackend, worker: str = "w1") -> JobRecord:
    (job,) = await backend.claim(ClaimParams(queues=[QUEUE], limit=1, worker=worker, lease_s=5))
    return job


async def _finish(
    backend: RedisBackend, job: JobRecord, kind: OutcomeKind, **fields: object
) -> None:
    outcome = Outcome(id=job.id, delivery=job.delivery, kind=kind, **fields)  # type: ignore[arg-type]
    assert (await backend.finish(FinishParams(outcomes=[outcome]))).rejected == []


async def _stored(backend: RedisBackend, job_id: str) -> JobRecord:
    (job,) = await backend.get(IdsParams(ids=[job_id]))
    assert job.unreadable is None, job.unreadable
    return job


def test_a_job_run_once_writes_no_key_of_its_own_and_its_hash_stays_compact(
    scratch_server: RedisServer,
) -> None:
    store = Store(scratch_server, "once")
    job = _job()

    async def body(backend: RedisBackend) -> JobRecord:
        await backend.enqueue(EnqueueParams(jobs=[job]))
        claimed = await _claim(backend)
        store.clock.now += 2
        await _finish(backend, claimed, OutcomeKind.SUCCEEDED, result=b"1")
        return await _stored(backend, job.id)

    stored = store.run(body)
    (attempt,) = stored.attempts
    assert (attempt.number, attempt.worker, attempt.outcome, attempt.error) == (
        1, "w1", AttemptOutcome.SUCCEEDED, None)  # fmt: skip
    assert (attempt.started_at, attempt.ended_at) == (START, START + 2)
    assert stored.finished_at == attempt.ended_at
    assert store.raw.exists(store.history_key(job.id)) == 0
    assert store.raw.object("encoding", store.job_key(job.id)) == b"listpack"


def test_every_way_an_attempt_ends_keeps_its_own_worker_times_and_error(
    scratch_server: RedisServer,
) -> None:
    store = Store(scratch_server, "ways")
    job = _job(max_attempts=5)

    async def body(backend: RedisBackend) -> JobRecord:
        await backend.enqueue(EnqueueParams(jobs=[job]))
        first = await _claim(backend, "w1")
        await _finish(backend, first, OutcomeKind.RETRY, error=E1, retry_delay_s=0)
        await _claim(backend, "w2")
        store.clock.now += 6  # the lease runs out: lost
        await backend.reap_expired(ReapParams(max_crashes=5))
        third = await _claim(backend, LONG_WORKER)
        await _finish(backend, third, OutcomeKind.RELEASE, error=E2)  # an error no field keeps
        fourth = await _claim(backend, "w4")
        await _finish(backend, fourth, OutcomeKind.DEAD, error=E1)
        return await _stored(backend, job.id)

    stored = store.run(body)
    assert [(a.number, a.worker, a.outcome, a.error) for a in stored.attempts] == [
        (1, "w1", AttemptOutcome.FAILED, E1),
        (2, "w2", AttemptOutcome.LOST, WORKER_LOST),
        (3, LONG_WORKER, AttemptOutcome.RELEASED, E2),
        (3, "w4", AttemptOutcome.FAILED, E1),  # dead: its error is the job's
    ]
    assert stored.attempts[1].ended_at == START + 6
    assert store.raw.llen(store.history_key(job.id)) == 3  # the last is told by the job


def test_a_persons_retry_keeps_the_attempt_that_ended_the_job(
    scratch_server: RedisServer,
) -> None:
    store = Store(scratch_server, "retried")
    job = _job()

    async def body(backend: RedisBackend) -> JobRecord:
        await backend.enqueue(EnqueueParams(jobs=[job]))
        first = await _claim(backend, "w1")
        await _finish(backend, first, OutcomeKind.DEAD, error=E1)
        await backend.retry(IdsParams(ids=[job.id]))  # rewrites attempt, worker, times
        await _claim(backend, "w2")
        await backend.cancel(IdsParams(ids=[job.id]))  # a person cancels it while it runs
        return await _stored(backend, job.id)

    stored = store.run(body)
    assert [(a.number, a.worker, a.outcome, a.error) for a in stored.attempts] == [
        (1, "w1", AttemptOutcome.FAILED, E1),
        (1, "w2", AttemptOutcome.CANCELLED, None),  # the job's error field is E1's: not its
    ]


def test_the_cap_counts_the_list_and_the_attempt_the_job_tells(
    scratch_server: RedisServer,
) -> None:
    store = Store(scratch_server, "cap")
    job = _job()

    async def body(backend: RedisBackend) -> JobRecord:
        await backend.enqueue(EnqueueParams(jobs=[job]))
        for _ in range(MAX_ATTEMPTS_KEPT + 2):
            await _finish(backend, await _claim(backend), OutcomeKind.DEFER, retry_delay_s=0)
        await _finish(backend, await _claim(backend, "last"), OutcomeKind.SUCCEEDED)
        done = await _stored(backend, job.id)
        assert len(done.attempts) == MAX_ATTEMPTS_KEPT
        assert (done.attempts[-1].worker, done.attempts[-1].outcome) == (
            "last", AttemptOutcome.SUCCEEDED)  # fmt: skip
        await backend.retry(IdsParams(ids=[job.id]))
        return await _stored(backend, job.id)

    again = store.run(body)
    assert len(again.attempts) == MAX_ATTEMPTS_KEPT
    assert again.attempts[-1].outcome is AttemptOutcome.SUCCEEDED


def test_a_history_key_of_another_type_loses_attempts_but_never_fails_a_step(
    scratch_server: RedisServer,
) -> None:
    store = Store(scratch_server, "wrongtype")
    job = _job(max_attempts=3)

    async def body(backend: RedisBackend) -> JobRecord:
        await backend.enqueue(EnqueueParams(jobs=[job]))
        store.raw.set(store.history_key(job.id), "written by hand")
        first = await _claim(backend)
        await _finish(backend, first, OutcomeKind.RETRY, error=E1, retry_delay_s=0)
        second = await _claim(backend)
        await _finish(backend, second, OutcomeKind.SUCCEEDED)
        return await _stored(backend, job.id)

    stored = store.run(body)
    assert [a.outcome for a in stored.attempts] == [AttemptOutcome.SUCCEEDED]
