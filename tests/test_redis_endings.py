"""What a job's end sets off on Redis, in the script that ends it, and what it leaves behind.

Follow-ups ride in the job's hash (nothing for a job without any) as items any payload
fits in; one that does not decode never stops the step that ends its parent. A batch's
record, its indexes and the per-minute counts all end: completed batches with prune,
counts with their lifetime on the server's clock (or prune, for old minutes). The
control kinds go on a channel of their own, always: a worker's subscription is no
listener of the full stream, which stays unbuilt while nobody else listens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis

from offload.backends.base import (
    BatchQueryParams,
    ClaimParams,
    CountsParams,
    CountsQuery,
    EnqueueParams,
    FinishParams,
    IdsParams,
    Outcome,
    OutcomeKind,
    PruneParams,
    PublishParams,
    SubscribeParams,
)
from offload.backends.redis import RedisBackend, redis_backend
from offload.records import (
    CONTROL_KINDS,
    BatchOpen,
    EventKind,
    FollowUp,
    JobEvent,
    MinuteCounts,
    NewJob,
)
from offload.states import JobState
from servers import RedisServer
from test_redis_values import QUEUE, _job

T = TypeVar("T")
START = 1_700_000_000.0
DEADLINE_S = 30.0


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


async def _finish(backend: RedisBackend, kind: OutcomeKind = OutcomeKind.SUCCEEDED) -> str:
    (job,) = await backend.claim(ClaimParams(queues=[QUEUE], limit=1, worker="w", lease_s=60))
    done = Outcome(id=job.id, delivery=job.delivery, kind=kind)
    assert (await backend.finish(FinishParams(outcomes=[done]))).rejected == []
    return job.id


def test_follow_ups_keep_any_payload_and_their_own_follow_ups(redis_url: str) -> None:
    payload = b'\x00\xff 12:34: "not json" \n'  # bytes a length-prefixed item keeps as they are
    grandchild = NewJob(id="j-grandchild", task="t", queue="later", payload=b"[]")
    child = NewJob(
        id="j-child", task="t", queue=QUEUE, payload=payload, priority=3, meta={"k": "v:1"},
        follow_ups=(FollowUp(on=(JobState.SUCCEEDED,), job=grandchild),),
    )  # fmt: skip
    parent = _job(follow_ups=(FollowUp(on=(JobState.SUCCEEDED, JobState.DEAD), job=child),))

    async def body(backend: RedisBackend) -> None:
        await backend.enqueue(EnqueueParams(jobs=[parent]))
        assert await _finish(backend) == parent.id
        (stored,) = await backend.get(IdsParams(ids=[child.id]))
        assert (stored.payload, stored.priority, stored.meta) == (payload, 3, {"k": "v:1"})
        assert await _finish(backend) == child.id
        (last,) = await backend.get(IdsParams(ids=[grandchild.id]))
        assert (last.queue, last.state) == ("later", JobState.QUEUED)

    _run(redis_url, Clock(), body)


def test_a_job_without_follow_ups_stores_no_field_for_them(scratch_server: RedisServer) -> None:
    raw = _raw(scratch_server)
    plain, parent = _job(), _job(follow_ups=(FollowUp(on=(JobState.DEAD,), job=_job()),))

    async def body(backend: RedisBackend) -> None:
        await backend.enqueue(EnqueueParams(jobs=[plain, parent]))

    _run(scratch_server.url(prefix="fu"), Clock(), body)
    assert not raw.hexists(f"fu:q:{{{QUEUE}}}:j:{plain.id}", "follow_ups")
    assert raw.hexists(f"fu:q:{{{QUEUE}}}:j:{parent.id}", "follow_ups")


def test_follow_ups_that_do_not_decode_never_stop_the_end_of_their_parent(
    scratch_server: RedisServer,
) -> None:
    raw = _raw(scratch_server)
    follow = _job()
    parents = [_job(follow_ups=(FollowUp(on=(JobState.SUCCEEDED,), job=follow),)) for _ in "ab"]
    written = ["99:cut short", "4:done" + "1:x" * 3]  # not items; items, not a follow-up's

    async def body(backend: RedisBackend) -> None:
        await backend.enqueue(EnqueueParams(jobs=parents))
        for parent, blob in zip(parents, written, strict=True):
            raw.hset(f"bad:q:{{{QUEUE}}}:j:{parent.id}", "follow_ups", blob)
        await _finish(backend)
        await _finish(backend)
        got = await backend.get(IdsParams(ids=[p.id for p in parents] + [follow.id]))
        assert [j.state for j in got] == [JobState.SUCCEEDED, JobState.SUCCEEDED]

    _run(scratch_server.url(prefix="bad"), Clock(), body)


def test_a_batch_whose_callback_does_not_decode_still_completes(
    scratch_server: RedisServer,
) -> None:
    raw = _raw(scratch_server)
    member, callback = _job(batch="b-1"), _job()

    async def body(backend: RedisBackend) -> None:
        opened = BatchOpen(id="b-1", callback=callback)
        await backend.enqueue(EnqueueParams(jobs=[member], batch=opened))
        raw.hset("cb:g:{cb}:batchrec:b-1", "callback", "3:abc")
        await _finish(backend)
        (record,) = await backend.batches(BatchQueryParams(ids=["b-1"]))
        assert (record.remaining, record.completed_at) == (0, START)
        assert await backend.get(IdsParams(ids=[callback.id])) == []

    _run(scratch_server.url(prefix="cb"), Clock(), body)


def test_a_completed_batch_leaves_no_key_once_pruned(scratch_server: RedisServer) -> None:
    raw = _raw(scratch_server)
    clock = Clock()
    members = [_job(batch="b-2") for _ in range(2)]
    callback = _job()

    async def body(backend: RedisBackend) -> None:
        opened = BatchOpen(id="b-2", callback=callback)
        await backend.enqueue(EnqueueParams(jobs=members, batch=opened))
        await backend.cancel(IdsParams(ids=[members[0].id]))
        await backend.delete(IdsParams(ids=[members[1].id]))
        await _finish(backend)  # the callback, stored by the delete
        clock.now += 100
        await backend.prune(PruneParams(finished_before=clock.now, counts_before=clock.now))
        assert await backend.batches(BatchQueryParams()) == []

    _run(scratch_server.url(prefix="bp"), clock, body)
    left = [k for k in raw.keys("bp:*") if ":claim:" not in k]  # a claim's note expires
    assert left == ["bp:g:{bp}:version"]


def test_count_keys_expire_on_the_servers_clock_and_old_minutes_are_pruned(
    scratch_server: RedisServer,
) -> None:
    raw = _raw(scratch_server)
    clock = Clock()
    minute = int(START // 60)
    row = MinuteCounts(minute=minute - 5, queue=QUEUE, task="t", source="w1", started=1)

    async def body(backend: RedisBackend) -> None:
        await backend.enqueue(EnqueueParams(jobs=[_job()]))
        await backend.record_counts(CountsParams(rows=[row], ttl_s=600))
        keys = raw.keys("cnt:g:{cnt}:count*")
        assert len(keys) == 3 and all(raw.pttl(k) > 0 for k in keys), keys
        assert raw.pttl(f"cnt:g:{{cnt}}:counts:{minute - 5}") <= 660_000  # its row's, and a minute
        await backend.prune(PruneParams(finished_before=0, counts_before=(minute - 1) * 60))
        rows = await backend.read_counts(CountsQuery(since_minute=0, until_minute=minute))
        assert [(r.minute, r.source, r.enqueued) for r in rows] == [(minute, "enqueue", 1)]
        raw.delete(f"cnt:g:{{cnt}}:counts:{minute}")  # as its lifetime ends on the server
        await backend.prune(PruneParams(finished_before=0))

    _run(scratch_server.url(prefix="cnt"), clock, body)
    assert raw.keys("cnt:g:{cnt}:count*") == []


def test_an_enqueued_count_written_by_hand_never_stops_an_enqueue(
    redis_server: RedisServer, redis_url: str
) -> None:
    raw = _raw(redis_server)
    prefix = redis_url.rsplit("prefix=", 1)[1]
    minute = int(START // 60)

    async def body(backend: RedisBackend) -> None:
        raw.hset(f"{prefix}:g:{{{prefix}}}:counts:{minute}", f'["{QUEUE}","t"]', "many")
        (stored,) = await backend.enqueue(EnqueueParams(jobs=[_job()]))
        assert stored.state is JobState.QUEUED
        this_minute = CountsQuery(since_minute=minute, until_minute=minute)
        assert await backend.read_counts(this_minute) == []

    _run(redis_url, Clock(), body)


def test_control_kinds_come_on_their_own_channel_without_building_the_full_stream(
    redis_server: RedisServer, redis_url: str
) -> None:
    raw = _raw(redis_server)
    prefix = redis_url.rsplit("prefix=", 1)[1]
    events_channel = f"{prefix}:g:{{{prefix}}}:events"

    async def body(backend: RedisBackend) -> list[JobEvent]:
        doomed, gone = _job(), _job()
        await backend.enqueue(EnqueueParams(jobs=[doomed, gone]))
        async with backend.subscribe(SubscribeParams(kinds=CONTROL_KINDS)) as stream:
            assert raw.pubsub_numsub(events_channel) == [(events_channel, 0)]
            await backend.enqueue(EnqueueParams(jobs=[_job()]))  # no control kind: unheard
            await backend.cancel(IdsParams(ids=[doomed.id]))
            await backend.delete(IdsParams(ids=[gone.id]))
            paused = JobEvent(kind=EventKind.QUEUE_PAUSED, queue=QUEUE, at=START)
            await backend.publish(PublishParams(events=[paused]))
            got: list[JobEvent] = []
            iterator = aiter(stream)
            async with asyncio.timeout(DEADLINE_S):
                while len(got) < 3:
                    got.extend(await anext(iterator))
        assert [(e.kind, e.id) for e in got] == [
            (EventKind.CANCELLED, doomed.id), (EventKind.DELETED, gone.id),
            (EventKind.QUEUE_PAUSED, "")]  # fmt: skip
        return got

    cancelled = _run(redis_url, Clock(), body)[0]
    assert (cancelled.state, cancelled.task, cancelled.queue) == (JobState.CANCELLED, "t", QUEUE)
