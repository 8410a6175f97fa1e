"""Values the Redis store cannot hold, and job hashes it cannot read.

A value one call carries (a lone surrogate, NaN, a time past 9999) fails that call with
``ValueRejected`` naming the job and the field, before any script writes, or is made
storable where nothing anyone needs is lost (an error message's surrogate, escaped).
A job hash written by hand or by another version (meta ``null``, an error of another
shape, an unknown state, fields missing) is returned with safe defaults and
``unreadable`` saying what, by a claim, a get and a query alike.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis

from offload.backends.base import (
    BackendError,
    ClaimParams,
    CountParams,
    DuplicateJob,
    EnqueueParams,
    FinishParams,
    IdsParams,
    JobFilter,
    MarkParams,
    Outcome,
    OutcomeKind,
    ProgressParams,
    ProgressUpdate,
    QueryParams,
    ValueRejected,
    WorkerBeatParams,
)
from offload.backends.redis import RedisBackend, redis_backend
from offload.records import ErrorInfo, JobRecord, NewJob, WorkerInfo
from offload.states import JobState
from servers import RedisServer

T = TypeVar("T")
QUEUE = "q"


def _run(url: str, body: Callable[[RedisBackend], Awaitable[T]]) -> T:
    async def main() -> T:
        backend = redis_backend(url)
        try:
            return await body(backend)
        finally:
            await backend.close()

    return asyncio.run(main())


def _job(**fields: Any) -> NewJob:
    fields.setdefault("id", "j-" + uuid.uuid4().hex[:12])
    return NewJob(task="t", queue=QUEUE, payload=b'{"args":[]}', **fields)


async def _claimed(backend: RedisBackend, **fields: Any) -> JobRecord:
    await backend.enqueue(EnqueueParams(jobs=[_job(**fields)]))
    (job,) = await backend.claim(ClaimParams(queues=[QUEUE], limit=1, worker="w", lease_s=60))
    return job


async def _get(backend: RedisBackend, job_id: str) -> JobRecord:
    (job,) = await backend.get(IdsParams(ids=[job_id]))
    return job


def _raw(server: RedisServer) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port)


def _prefix(url: str) -> str:
    return url.rsplit("prefix=", 1)[1]


# -- defect 1: outcomes and calls the store cannot take ----------------------------------


def test_an_error_message_with_a_lone_surrogate_is_stored_escaped(redis_url: str) -> None:
    async def body(backend: RedisBackend) -> JobRecord:
        job = await _claimed(backend)
        error = ErrorInfo(type="OSError", message="cannot read report-\udcff.txt", traceback="x")
        outcome = Outcome(id=job.id, delivery=job.delivery, kind=OutcomeKind.DEAD, error=error)
        result = await backend.finish(FinishParams(outcomes=[outcome]))
        assert result.rejected == []
        return await _get(backend, job.id)

    stored = _run(redis_url, body)
    assert stored.state is JobState.DEAD
    assert stored.error is not None and stored.error.message == "cannot read report-\\udcff.txt"


@pytest.mark.parametrize("delay_s", [math.nan, math.inf, 1e14])
def test_a_retry_delay_out_of_range_is_refused_naming_the_job_and_nothing_changes(
    redis_url: str, delay_s: float
) -> None:
    async def body(backend: RedisBackend) -> tuple[JobRecord, JobRecord]:
        job = await _claimed(backend)
        outcome = Outcome(
            id=job.id, delivery=job.delivery, kind=OutcomeKind.RETRY, retry_delay_s=delay_s
        )
        with pytest.raises(ValueRejected, match=f"{job.id}.*retry_delay_s"):
            await backend.finish(FinishParams(outcomes=[outcome]))
        return job, await _get(backend, job.id)

    claimed, after = _run(redis_url, body)
    assert after.state is JobState.RUNNING and after.delivery == claimed.delivery


@pytest.mark.parametrize(
    ("field", "fields"),
    [
        ("id", {"id": "report-\udcff"}),
        ("task", {"task_": "t-\udcff"}),
        ("key", {"key": "k-\udcff"}),
        ("meta", {"meta": {"file": "report-\udcff.txt"}}),
        ("delay_s", {"delay_s": math.nan}),
        ("delay_s", {"delay_s": -math.inf}),
        ("run_at", {"run_at": math.inf}),
        ("run_at", {"run_at": 1e14}),
        ("lease_s", {"lease_s": math.nan}),
        ("timeout_s", {"timeout_s": math.inf}),
    ],
)
def test_enqueue_refuses_a_value_it_cannot_hold_and_stores_nothing(
    redis_url: str, field: str, fields: dict[str, Any]
) -> None:
    task = fields.pop("task_", "t")
    bad = NewJob(task=task, queue=QUEUE, payload=b"[]", **{"id": "j-bad", **fields})
    good = _job()

    async def body(backend: RedisBackend) -> None:
        with pytest.raises(ValueRejected, match=field):
            await backend.enqueue(EnqueueParams(jobs=[good, bad]))
        assert await backend.get(IdsParams(ids=[good.id, "j-bad"])) == []
        stats = await backend.stats()
        assert all(sum(s.counts.values()) == 0 for s in stats), stats
        await backend.enqueue(EnqueueParams(jobs=[good]))  # the id was left free

    _run(redis_url, body)


def test_the_enqueue_script_checks_every_job_before_its_first_write(
    redis_server: RedisServer, redis_url: str
) -> None:
    """Even called without the Python checks (another client, an older version), a NaN
    delay never half-applies: a queued job in no index was never claimed nor pruned."""
    from offload.backends.redis_codec import enqueue_args
    from offload.backends.redis_plans import Scripts

    scripts = Scripts()
    good = _job()
    args = enqueue_args([good, _job(id="j-nan")])
    args[1 + 15 + 6] = "nan"  # the second job's delay_s
    raw = _raw(redis_server)
    raw.script_load(scripts.source["enqueue"])
    with pytest.raises(redis.exceptions.ResponseError, match="OFFLOAD_REJECTED"):
        raw.evalsha(scripts.sha["enqueue"], 0, _prefix(redis_url), "", *args)
    assert raw.keys(_prefix(redis_url) + ":*") == []


def test_progress_with_a_lone_surrogate_is_escaped_and_nan_progress_skipped(
    redis_url: str,
) -> None:
    async def body(backend: RedisBackend) -> JobRecord:
        job = await _claimed(backend)
        note = ProgressUpdate(id=job.id, delivery=job.delivery, progress=0.5, message="f-\udcff")
        await backend.report_progress(ProgressParams(updates=[note]))
        nan = ProgressUpdate(id=job.id, delivery=job.delivery, progress=math.nan)
        await backend.report_progress(ProgressParams(updates=[nan]))  # as every store: skipped
        return await _get(backend, job.id)

    stored = _run(redis_url, body)
    assert (stored.progress, stored.progress_message) == (0.5, "f-\\udcff")


def test_other_calls_refuse_text_they_cannot_hold(redis_url: str) -> None:
    async def body(backend: RedisBackend) -> None:
        with pytest.raises(ValueRejected):
            await backend.set_mark(MarkParams(name="m-\udcff", value="1"))
        with pytest.raises(ValueRejected):
            await backend.get(IdsParams(ids=["x-\udcff"]))
        with pytest.raises(ValueRejected):
            await backend.query(QueryParams(filter=JobFilter(task="t-\udcff")))
        with pytest.raises(ValueRejected):
            await backend.claim(ClaimParams(queues=["q-\udcff"], limit=1, worker="w", lease_s=1))
        with pytest.raises(ValueRejected):
            await backend.count(CountParams(filter=JobFilter(text="t-\udcff")))
        with pytest.raises(ValueRejected):
            await backend.delete(IdsParams(ids=["x-\udcff"]))
        worker = WorkerInfo(id="w-\udcff", host="h", pid=1, queues=[], concurrency=1,
                            started_at=0.0)  # fmt: skip
        with pytest.raises(ValueRejected):
            await backend.beat_worker(WorkerBeatParams(worker=worker, ttl_s=10))
        with pytest.raises(ValueRejected):  # a lifetime is a span: finite, at most 1e10 s
            await backend.beat_worker(WorkerBeatParams(worker=_worker(), ttl_s=math.inf))

    _run(redis_url, body)


def _worker() -> WorkerInfo:
    return WorkerInfo(id="w", host="h", pid=1, queues=[], concurrency=1, started_at=0.0)


def test_an_outage_is_a_backend_error(redis_server: RedisServer) -> None:
    from servers import free_port

    async def body(backend: RedisBackend) -> None:
        with pytest.raises(BackendError):
            await backend.get(IdsParams(ids=["x"]))

    _run(f"redis://127.0.0.1:{free_port()}/0", body)


# -- defect 21 and 16: duplicate ids, all or nothing -----------------------------------


def test_an_id_already_stored_raises_duplicate_job_and_stores_nothing_of_the_call(
    redis_url: str,
) -> None:
    async def body(backend: RedisBackend) -> None:
        held = _job(key="the-key")
        await backend.enqueue(EnqueueParams(jobs=[held]))
        again = _job(id=held.id)
        fresh, keyed = _job(), _job(key="other-key")
        with pytest.raises(DuplicateJob, match=held.id):
            await backend.enqueue(EnqueueParams(jobs=[fresh, keyed, _job(key="the-key"), again]))
        assert await backend.get(IdsParams(ids=[fresh.id, keyed.id])) == []
        (taken,) = await backend.enqueue(EnqueueParams(jobs=[_job(key="other-key")]))
        assert taken.id != keyed.id  # the failed call held no key either

    _run(redis_url, body)


# -- defect 3: job hashes that do not decode ---------------------------------------------

BROKEN = [
    ("meta", {"meta": "null"}),
    ("meta", {"meta": "{garbage"}),
    ("error", {"error": '"just a string"'}),
    ("priority", {"priority": "high"}),
    ("created_at", {"created_at": None}),
    ("progress", {"progress": "half"}),
]


@pytest.mark.parametrize(("field", "change"), BROKEN)
def test_a_job_hash_that_does_not_decode_is_claimed_got_and_listed_as_unreadable(
    redis_server: RedisServer, redis_url: str, field: str, change: dict[str, str | None]
) -> None:
    raw = _raw(redis_server)
    prefix = _prefix(redis_url)

    async def body(backend: RedisBackend) -> None:
        job = _job()
        other = _job()
        await backend.enqueue(EnqueueParams(jobs=[job, other]))
        key = f"{prefix}:q:{{{QUEUE}}}:j:{job.id}"
        for name, value in change.items():
            if value is None:
                raw.hdel(key, name)
            else:
                raw.hset(key, name, value)
        got = await _get(backend, job.id)
        assert got.unreadable is not None and field in got.unreadable, got
        page = await backend.query(QueryParams(filter=JobFilter(queue=QUEUE)))
        listed = {j.id: j for j in page.jobs}
        assert listed[job.id].unreadable is not None and listed[other.id].unreadable is None
        claimed = await backend.claim(ClaimParams(queues=[QUEUE], limit=5, worker="w", lease_s=60))
        assert {j.id for j in claimed} == {job.id, other.id}
        broken = next(j for j in claimed if j.id == job.id)
        assert broken.state is JobState.RUNNING and field in (broken.unreadable or "")
        # ... and it can be dead-lettered like any other job.
        dead = Outcome(id=job.id, delivery=broken.delivery, kind=OutcomeKind.DEAD)
        assert (await backend.finish(FinishParams(outcomes=[dead]))).rejected == []

    _run(redis_url, body)


def test_an_unknown_state_or_a_hash_missing_its_fields_still_reads(
    redis_server: RedisServer, redis_url: str
) -> None:
    raw = _raw(redis_server)
    prefix = _prefix(redis_url)

    async def body(backend: RedisBackend) -> None:
        paused, gone = _job(), _job()
        await backend.enqueue(EnqueueParams(jobs=[paused, gone]))
        raw.hset(f"{prefix}:q:{{{QUEUE}}}:j:{paused.id}", "state", "paused")
        raw.delete(f"{prefix}:q:{{{QUEUE}}}:j:{gone.id}")  # indexed, but the hash is gone
        got = {j.id: j for j in await backend.get(IdsParams(ids=[paused.id, gone.id]))}
        assert "state" in (got[paused.id].unreadable or "")
        assert got[gone.id].id == gone.id and got[gone.id].queue == QUEUE
        assert "task" in (got[gone.id].unreadable or "")
        claimed = await backend.claim(ClaimParams(queues=[QUEUE], limit=5, worker="w", lease_s=60))
        assert {j.id for j in claimed} == {paused.id, gone.id}
        assert next(j for j in claimed if j.id == gone.id).unreadable

    _run(redis_url, body)
