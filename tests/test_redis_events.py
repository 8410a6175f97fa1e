"""Redis live events: what another process does is heard here, a subscription that loses
its connection ends (BackendError) instead of hanging, and prefixes never hear each other.

Every test uses its own key prefix, or a server of the module's own when it cuts
connections. Deadlines guard against hangs; none is a timing assertion.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
import uuid
from collections.abc import Iterator

import pytest
import redis

from offload.backends import redis_events
from offload.backends.base import (
    BackendError,
    ClaimParams,
    CountParams,
    EnqueueParams,
    EventStream,
    IdsParams,
    JobFilter,
    PublishParams,
    WorkerBeatParams,
)
from offload.backends.redis import redis_backend
from offload.backends.redis_plans import plan_claim_with_hint, plan_unclaim
from offload.ids import IdGenerator
from offload.records import EventKind, JobEvent, NewJob, WorkerInfo
from offload.states import JobState
from servers import RedisServer
from test_cli import base_env
from test_redis_partition import SilentProxy

DEADLINE_S = 30.0
new_id = IdGenerator()

#: Another process: enqueue one job, claim it as worker "far", finish it; print its id.
OTHER_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from offload.backends.base import (
        ClaimParams, EnqueueParams, FinishParams, Outcome, OutcomeKind)
    from offload.backends.redis import redis_backend
    from offload.records import NewJob

    async def main(url, job_id):
        backend = redis_backend(url)
        try:
            job = NewJob(id=job_id, task="t", queue="far", payload=b"[]", owner="o-1")
            await backend.enqueue(EnqueueParams(jobs=[job]))
            (claimed,) = await backend.claim(
                ClaimParams(queues=["far"], limit=1, worker="far", lease_s=30))
            done = Outcome(id=job_id, delivery=claimed.delivery, kind=OutcomeKind.SUCCEEDED)
            await backend.finish(FinishParams(outcomes=[done]))
        finally:
            await backend.close()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def _events(stream: EventStream, wanted: int) -> list[JobEvent]:
    got: list[JobEvent] = []
    iterator = aiter(stream)
    async with asyncio.timeout(DEADLINE_S):
        while len(got) < wanted:
            got.extend(await anext(iterator))
    return got


def _job(queue: str = "q", **fields: object) -> NewJob:
    return NewJob(id=new_id(), task="t", queue=queue, payload=b"[]", **fields)  # type: ignore[arg-type]


def test_a_subscriber_hears_what_another_process_does(redis_url: str) -> None:
    job_id = new_id()

    async def main() -> list[JobEvent]:
        backend = redis_backend(redis_url)
        try:
            async with backend.subscribe() as stream:
                other = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", OTHER_PROCESS, redis_url, job_id, env=base_env()
                )
                async with asyncio.timeout(DEADLINE_S):
                    assert await other.wait() == 0
                return await _events(stream, 3)
        finally:
            await backend.close()

    enqueued, started, succeeded = asyncio.run(main())
    assert {e.id for e in (enqueued, started, succeeded)} == {job_id}
    assert (enqueued.kind, enqueued.state, enqueued.owner, enqueued.queue) == (
        EventKind.ENQUEUED, JobState.QUEUED, "o-1", "far")  # fmt: skip
    assert (started.kind, started.worker, started.attempt) == (EventKind.STARTED, "far", 1)
    assert (succeeded.kind, succeeded.state, succeeded.worker) == (
        EventKind.SUCCEEDED, JobState.SUCCEEDED, "far")  # fmt: skip
    assert enqueued.at <= started.at <= succeeded.at


def test_two_prefixes_never_hear_each_other(redis_server: RedisServer) -> None:
    one = redis_server.url(prefix="ev" + uuid.uuid4().hex[:8])
    two = redis_server.url(prefix="ev" + uuid.uuid4().hex[:8])

    async def main() -> None:
        mine, theirs = redis_backend(one), redis_backend(two)
        try:
            async with mine.subscribe() as stream:
                await theirs.enqueue(EnqueueParams(jobs=[_job()]))
                marker = _job()
                await mine.enqueue(EnqueueParams(jobs=[marker]))
                (event,) = await _events(stream, 1)
                assert event.id == marker.id, "heard a step of another prefix"
        finally:
            await mine.close()
            await theirs.close()

    asyncio.run(main())


def test_a_claim_handed_back_is_heard_back_in_its_queue(redis_url: str) -> None:
    async def main() -> list[JobEvent]:
        backend = redis_backend(redis_url)
        try:
            job = _job()
            await backend.enqueue(EnqueueParams(jobs=[job]))
            async with backend.subscribe() as stream:
                claim = ClaimParams(queues=["q"], limit=1, worker="w", lease_s=30)
                token = uuid.uuid4().hex
                await backend.run(plan_claim_with_hint(claim, token))  # its reply "lost"
                assert await backend.run(plan_unclaim(token)) == 1
                return await _events(stream, 2)
        finally:
            await backend.close()

    started, back = asyncio.run(main())
    assert (started.kind, back.kind, back.state, back.attempt) == (
        EventKind.STARTED, EventKind.REQUEUED, JobState.QUEUED, 0)  # fmt: skip


def test_blocking_callers_count_delete_publish_and_list_workers(redis_url: str) -> None:
    async def main() -> list[JobEvent]:
        backend = redis_backend(redis_url)
        sync = backend.blocking
        try:
            jobs = [_job(owner="alice"), _job(owner="bob")]
            await backend.enqueue(EnqueueParams(jobs=jobs))
            worker = WorkerInfo(id="w1", host="h", pid=1, queues=["q"], concurrency=1,
                                started_at=1.0)  # fmt: skip
            await backend.beat_worker(WorkerBeatParams(worker=worker, ttl_s=60))
            async with backend.subscribe() as stream:
                paused = JobEvent(kind=EventKind.QUEUE_PAUSED, queue="q", at=2.0)
                await asyncio.to_thread(sync.publish, PublishParams(events=[paused]))
                owned = CountParams(filter=JobFilter(owner="alice", text="ALI"))
                assert await asyncio.to_thread(sync.count, owned) == 1
                gone = await asyncio.to_thread(sync.delete, IdsParams(ids=[jobs[0].id]))
                assert gone == [jobs[0].id]
                assert [w.id for w in await asyncio.to_thread(sync.workers)] == ["w1"]
                return await _events(stream, 2)
        finally:
            await backend.close()

    published, deleted = asyncio.run(main())
    assert published.kind is EventKind.QUEUE_PAUSED
    assert (deleted.kind, deleted.owner) == (EventKind.DELETED, "alice")


# -- a subscription whose connection is lost ends -------------------------------------


def _subscribers(server: RedisServer) -> int:
    clients = redis.Redis(host="127.0.0.1", port=server.port).client_list(_type="pubsub")
    return len(clients)


def test_a_subscription_whose_connection_is_killed_ends_with_backend_error(
    scratch_server: RedisServer,
) -> None:
    url = scratch_server.url(prefix="killed")

    async def main() -> None:
        backend = redis_backend(url)
        try:
            async with backend.subscribe() as stream:
                raw = redis.Redis(host="127.0.0.1", port=scratch_server.port)
                assert raw.client_kill_filter(_type="pubsub") == 1
                with pytest.raises(BackendError):
                    await _events(stream, 1)
        finally:
            await backend.close()

    asyncio.run(main())
    assert _subscribers(scratch_server) == 0


@pytest.fixture
def quick_pings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(redis_events, "PING_IDLE_S", 0.2)
    monkeypatch.setattr(redis_events, "PONG_WAIT_S", 0.5)
    yield


def test_a_subscription_whose_connection_went_silent_ends_with_backend_error(
    redis_server: RedisServer, quick_pings: None
) -> None:
    proxy = SilentProxy(redis_server.port)

    async def main() -> None:
        backend = redis_backend(proxy.url("silent" + uuid.uuid4().hex[:8]))
        try:
            async with backend.subscribe() as stream:
                proxy.kill_flows()  # nothing arrives any more, and nothing says so
                with pytest.raises(BackendError, match="PING"):
                    await _events(stream, 1)
        finally:
            await backend.close()

    try:
        asyncio.run(main())
    finally:
        proxy.close()


def test_an_idle_subscription_stays_open_across_its_pings(
    redis_url: str, quick_pings: None
) -> None:
    async def main() -> JobEvent:
        backend = redis_backend(redis_url)
        try:
            async with backend.subscribe() as stream:
                later = asyncio.get_running_loop().call_later(
                    1.5, lambda: asyncio.ensure_future(backend.enqueue(EnqueueParams(jobs=[job])))
                )
                try:
                    (event,) = await _events(stream, 1)  # several pings answered meanwhile
                finally:
                    later.cancel()
                return event
        finally:
            await backend.close()

    job = _job()
    assert asyncio.run(main()).id == job.id


def test_subscribing_to_an_unreachable_server_is_a_backend_error() -> None:
    from servers import free_port

    async def main() -> None:
        backend = redis_backend(f"redis://127.0.0.1:{free_port()}/0?prefix=nowhere")
        try:
            with pytest.raises(BackendError, match="cannot connect to Redis"):
                async with backend.subscribe():
                    pass
        finally:
            await backend.close()

    asyncio.run(main())
