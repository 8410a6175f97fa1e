"""Everything the Redis store writes has a lifetime, and a batch is listed from its own
index: marks expire on the store's clock, prune deletes old fair turns and forgets empty
queues, a batch's index ends with its jobs, the worker registry empties as workers stop,
and a deleted job leaves nothing behind."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis

from offload.backends.base import (
    ClaimParams,
    CountParams,
    EnqueueParams,
    FinishParams,
    IdsParams,
    JobFilter,
    MarkNamesParams,
    MarkParams,
    Outcome,
    OutcomeKind,
    PruneParams,
    QueryParams,
    WorkerBeatParams,
)
from offload.backends.redis import RedisBackend, redis_backend
from offload.backends.redis_keys import LAYOUT_VERSION
from offload.records import NewJob, WorkerInfo
from servers import RedisServer
from test_redis_values import QUEUE, _job

T = TypeVar("T")
START = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _run(url: str, clock: Clock, body: Callable[[RedisBackend], Awaitable[T]]) -> T:
    async def main() -> T:
        backend = redis_backend(url, clock=clock)
        try:
            return await body(backend)
        finally:
            await backend.close()

    return asyncio.run(main())


def _raw(server: RedisServer) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, decode_responses=True)


def test_a_mark_written_with_a_lifetime_is_gone_after_it(
    scratch_server: RedisServer,
) -> None:
    clock = Clock()

    async def body(backend: RedisBackend) -> None:
        assert await backend.set_mark(MarkParams(name="batch:1", value="done", ttl_s=60))
        assert await backend.set_mark(MarkParams(name="cron:x", value="1"))
        names = MarkNamesParams(names=["batch:1", "cron:x"])
        assert await backend.get_marks(names) == {"batch:1": "done", "cron:x": "1"}
        clock.now += 61
        assert await backend.get_marks(names) == {"cron:x": "1"}
        # gone for a compare-and-set too: it may be written afresh
        assert await backend.set_mark(MarkParams(name="batch:1", value="again"))

    _run(scratch_server.url(prefix="marks"), clock, body)
    raw = _raw(scratch_server)
    assert raw.hgetall("marks:g:{marks}:marks") == {"batch:1": "again", "cron:x": "1"}
    assert raw.zcard("marks:g:{marks}:mark_until") == 0


def test_prune_forgets_a_queue_left_empty_and_its_keys(scratch_server: RedisServer) -> None:
    clock = Clock()

    async def body(backend: RedisBackend) -> None:
        job = _job(owner="o", fair=True)
        await backend.enqueue(EnqueueParams(jobs=[job]))
        (claimed,) = await backend.claim(
            ClaimParams(queues=[QUEUE], limit=1, worker="w", lease_s=60)
        )
        done = Outcome(id=job.id, delivery=claimed.delivery, kind=OutcomeKind.SUCCEEDED)
        await backend.finish(FinishParams(outcomes=[done]))
        clock.now += 100
        assert await backend.prune(PruneParams(finished_before=clock.now - 1)) == 1

    _run(scratch_server.url(prefix="empty"), clock, body)
    raw = _raw(scratch_server)
    assert raw.smembers("empty:g:{empty}:queues") == set()
    assert raw.keys("empty:q:*") == []


def _hmget_calls(raw: redis.Redis) -> int:
    stats = raw.info("commandstats").get("cmdstat_hmget", {"calls": 0})
    return int(stats["calls"])


def test_a_batch_is_listed_from_its_index_without_scanning_every_job(
    scratch_server: RedisServer,
) -> None:
    clock = Clock()
    raw = _raw(scratch_server)
    other = NewJob(id="j-other-queue", task="t", queue="other", payload=b"[]", batch="b-1")
    members = [_job(batch="b-1") for _ in range(3)] + [other]

    async def body(backend: RedisBackend) -> None:
        await backend.enqueue(EnqueueParams(jobs=[_job() for _ in range(300)]))
        await backend.enqueue(EnqueueParams(jobs=[*members, *(_job() for _ in range(300))]))
        before = _hmget_calls(raw)
        page = await backend.query(QueryParams(filter=JobFilter(batch="b-1"), limit=2))
        second = await backend.query(
            QueryParams(filter=JobFilter(batch="b-1"), limit=2, cursor=page.next_cursor)
        )
        looked = _hmget_calls(raw) - before
        ids = sorted((j.id for j in members), reverse=True)
        assert [j.id for j in page.jobs + second.jobs] == ids
        assert second.next_cursor is None
        assert looked <= 4 * len(members), looked  # ~2 per member, not one per job stored

    _run(scratch_server.url(prefix="batches"), clock, body)


def test_a_batch_index_ends_with_its_jobs_and_an_older_layout_is_indexed_on_upgrade(
    scratch_server: RedisServer,
) -> None:
    clock = Clock()
    raw = _raw(scratch_server)
    url = scratch_server.url(prefix="upgrade")
    job = _job(batch="b-2")

    async def store(backend: RedisBackend) -> None:
        await backend.enqueue(EnqueueParams(jobs=[job]))

    _run(url, clock, store)
    raw.delete("upgrade:g:{upgrade}:batch:b-2")  # as a layout 1 store left it
    raw.set("upgrade:g:{upgrade}:version", "1")

    async def upgraded(backend: RedisBackend) -> None:
        page = await backend.query(QueryParams(filter=JobFilter(batch="b-2")))
        assert [j.id for j in page.jobs] == [job.id]
        (claimed,) = await backend.claim(
            ClaimParams(queues=[QUEUE], limit=1, worker="w", lease_s=60)
        )
        done = Outcome(id=job.id, delivery=claimed.delivery, kind=OutcomeKind.SUCCEEDED)
        await backend.finish(FinishParams(outcomes=[done]))
        clock.now += 100
        await backend.prune(PruneParams(finished_before=clock.now))

    _run(url, clock, upgraded)
    assert raw.get("upgrade:g:{upgrade}:version") == str(LAYOUT_VERSION)
    assert not raw.exists("upgrade:g:{upgrade}:batch:b-2")


def test_prune_deletes_old_turns_of_many_owners_in_short_steps(
    scratch_server: RedisServer,
) -> None:
    clock = Clock()
    raw = _raw(scratch_server)

    async def body(backend: RedisBackend) -> None:
        jobs = [_job(owner=f"owner-{n}", fair=True) for n in range(2500)]
        await backend.enqueue(EnqueueParams(jobs=jobs))
        assert raw.hlen("turns:q:{q}:turns") == 2500
        clock.now += 100
        await backend.prune(PruneParams(finished_before=clock.now - 1))

    _run(scratch_server.url(prefix="turns"), clock, body)
    assert raw.hlen("turns:q:{q}:turns") == 0
    assert raw.smembers("turns:g:{turns}:queues") == {"q"}  # its jobs wait: the queue stays


def test_the_worker_registry_empties_on_the_stores_clock_and_expires_on_the_servers(
    scratch_server: RedisServer,
) -> None:
    clock = Clock()
    raw = _raw(scratch_server)
    registry = ("reg:g:{reg}:workers", "reg:g:{reg}:worker_until")

    def worker(worker_id: str) -> WorkerInfo:
        return WorkerInfo(id=worker_id, host="h", pid=1, queues=[QUEUE], concurrency=1,
                          started_at=START)  # fmt: skip

    async def beat(backend: RedisBackend) -> None:
        await backend.beat_worker(WorkerBeatParams(worker=worker("w1"), ttl_s=30))
        await backend.beat_worker(WorkerBeatParams(worker=worker("w2"), ttl_s=10))

    _run(scratch_server.url(prefix="reg"), clock, beat)
    for key in registry:  # a lifetime on the server's clock: the longest ttl of the beats
        assert 10_000 < raw.pttl(key) <= 30_000, key

    async def prune(backend: RedisBackend) -> None:
        clock.now += 31
        assert await backend.workers() == []
        await backend.prune(PruneParams(finished_before=clock.now))

    _run(scratch_server.url(prefix="reg"), clock, prune)
    assert not any(raw.exists(key) for key in registry)


def test_a_deleted_job_leaves_nothing_behind(scratch_server: RedisServer) -> None:
    clock = Clock()
    raw = _raw(scratch_server)
    job = _job(key="k-1", batch="b-1", owner="o")

    async def body(backend: RedisBackend) -> None:
        await backend.enqueue(EnqueueParams(jobs=[job]))
        assert await backend.delete(IdsParams(ids=[job.id, job.id])) == [job.id]
        assert raw.keys("gone:q:{q}:j:*") == []
        await backend.prune(PruneParams(finished_before=clock.now))  # the queue, now empty

    _run(scratch_server.url(prefix="gone"), clock, body)
    left = sorted(raw.keys("gone:*"))
    minute = int(START // 60)  # the enqueue's count stays, with a lifetime of its own
    counts = ["gone:g:{gone}:count_minutes", f"gone:g:{{gone}}:counts:{minute}"]
    assert left == [*counts, "gone:g:{gone}:version"]
    assert all(raw.pttl(key) > 0 for key in counts)


def test_a_layout_2_keyspace_gets_its_created_index_on_upgrade(
    scratch_server: RedisServer,
) -> None:
    clock = Clock()
    raw = _raw(scratch_server)
    url = scratch_server.url(prefix="layout2")
    job = _job()

    async def store(backend: RedisBackend) -> None:
        await backend.enqueue(EnqueueParams(jobs=[job]))

    _run(url, clock, store)
    raw.delete("layout2:q:{q}:created")  # as a layout 2 store left it
    raw.set("layout2:g:{layout2}:version", "2")

    async def upgraded(backend: RedisBackend) -> None:
        window = JobFilter(created_after=START, created_before=START + 1)
        page = await backend.query(QueryParams(filter=window))
        assert [j.id for j in page.jobs] == [job.id]
        assert await backend.count(CountParams(filter=window)) == 1

    _run(url, clock, upgraded)
    assert raw.get("layout2:g:{layout2}:version") == str(LAYOUT_VERSION)
    assert raw.zrange("layout2:q:{q}:created", 0, -1, withscores=True) == [(job.id, START)]


def test_owner_and_task_filters_walk_their_own_index_which_ends_with_the_jobs(
    scratch_server: RedisServer,
) -> None:
    """An owner's page reads that owner's jobs, not every job of every queue, and a
    layout 4 keyspace (no owner or task index) is indexed on upgrade."""
    clock = Clock()
    raw = _raw(scratch_server)
    url = scratch_server.url(prefix="owners")
    mine = [_job(owner="ann") for _ in range(3)]
    others = [_job(owner=f"o{n}") for n in range(200)]

    async def store(backend: RedisBackend) -> None:
        await backend.enqueue(EnqueueParams(jobs=others[:100] + mine + others[100:]))

    _run(url, clock, store)
    assert raw.zcard("owners:g:{owners}:owner:ann") == 3
    assert raw.zcard(f"owners:g:{{owners}}:task:{mine[0].task}") == 203
    raw.delete("owners:g:{owners}:owner:ann", f"owners:g:{{owners}}:task:{mine[0].task}")
    raw.set("owners:g:{owners}:version", "4")  # as a layout 4 store left it

    async def upgraded(backend: RedisBackend) -> None:
        await backend.stats()  # the upgrade, on the first call, reads every job once
        before = _hmget_calls(raw)
        page = await backend.query(QueryParams(filter=JobFilter(owner="ann"), limit=10))
        assert sorted(j.id for j in page.jobs) == sorted(j.id for j in mine)
        looked = _hmget_calls(raw) - before
        assert looked <= 4 * len(mine), looked  # ~2 per job of hers, not one per job stored
        assert await backend.count(CountParams(filter=JobFilter(owner="ann"))) == 3
        by_task = JobFilter(task=mine[0].task, owner="ann")
        assert await backend.count(CountParams(filter=by_task)) == 3
        assert await backend.count(CountParams(filter=JobFilter(task=mine[0].task))) == 203
        await backend.delete(IdsParams(ids=[mine[0].id]))

    _run(url, clock, upgraded)
    assert raw.get("owners:g:{owners}:version") == str(LAYOUT_VERSION)
    assert raw.zrange("owners:g:{owners}:owner:ann", 0, -1) == sorted(j.id for j in mine[1:])
    assert raw.zcard(f"owners:g:{{owners}}:task:{mine[0].task}") == 202
