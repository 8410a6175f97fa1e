"""A job key of the wrong type on Redis (a string where the job's hash should be: written
by hand, or by another tool sharing the prefix) fails only its own job.

A Lua script that fails halfway keeps its earlier writes, so every script reads a job's
hash before its first write for that job, and passes over one that is not a hash: the job
is dead (in the dead index, where no claim pops it and prune or purge deletes it), a get
or query returns it with ``unreadable`` saying why, and the other jobs go on. A command
that still fails on such data names its key, as a ValueRejected, never as an outage.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis

from offload import JobState, Offload
from offload.backends.base import (
    BackendError,
    ClaimParams,
    EnqueueParams,
    FinishParams,
    HeartbeatParams,
    IdsParams,
    JobFilter,
    LeaseRef,
    Outcome,
    OutcomeKind,
    ProgressParams,
    ProgressUpdate,
    PruneParams,
    PurgeParams,
    QueryParams,
    ReapParams,
    ValueRejected,
)
from offload.backends.redis import RedisBackend, redis_backend
from offload.backends.redis_errors import translate
from offload.records import JobRecord, NewJob
from servers import RedisServer
from test_redis import offload_cli
from worker_helpers import WorkerThread

T = TypeVar("T")
QUEUE = "q"
#: The time the store's clock starts at in tests that move it (leases, schedules).
T0 = 1_800_000_000.0


class Store:
    """A backend on a fresh prefix, a clock the test moves, and a plain client beside it."""

    def __init__(self, server: RedisServer, url: str) -> None:
        self.raw = redis.Redis(host="127.0.0.1", port=server.port)
        self.url = url
        self.prefix = url.rsplit("prefix=", 1)[1]
        self.now = T0

    def key(self, job_id: str, queue: str = QUEUE) -> str:
        return f"{self.prefix}:q:{{{queue}}}:j:{job_id}"

    def index(self, name: str, queue: str = QUEUE) -> list[str]:
        return [i.decode() for i in self.raw.zrange(f"{self.prefix}:q:{{{queue}}}:{name}", 0, -1)]

    def damage(self, job_id: str, queue: str = QUEUE) -> None:
        """What another tool does: a string where the job's hash was."""
        self.raw.delete(self.key(job_id, queue))
        self.raw.set(self.key(job_id, queue), "garbage")

    def run(self, body: Callable[[RedisBackend], Awaitable[T]]) -> T:
        async def main() -> T:
            backend = redis_backend(self.url, clock=lambda: self.now)
            try:
                return await body(backend)
            finally:
                await backend.close()

        return asyncio.run(main())


@pytest.fixture
def store(redis_server: RedisServer, redis_url: str) -> Store:
    return Store(redis_server, redis_url)


def _jobs(n: int, queue: str = QUEUE, **fields: Any) -> list[NewJob]:
    """n jobs a claim takes in this order (ids are compared when run_at ties)."""
    tag = uuid.uuid4().hex[:8]
    return [
        NewJob(id=f"j-{tag}-{i:02}", task="t", queue=queue, payload=b'{"args":[]}', **fields)
        for i in range(n)
    ]


def _claim(limit: int, *queues: str) -> ClaimParams:
    return ClaimParams(queues=list(queues or [QUEUE]), limit=limit, worker="w", lease_s=60)


def _is_damaged(job: JobRecord, job_id: str) -> None:
    assert job.id == job_id and job.queue == QUEUE, job
    assert job.state is JobState.DEAD, job
    assert job.unreadable is not None and "holds a string, not a hash" in job.unreadable, job


# -- the claim ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, 3], ids=["first", "fourth"])
@pytest.mark.parametrize("queues", [[QUEUE], [QUEUE, "other"]], ids=["one-queue", "two-queues"])
def test_a_claim_passes_over_a_wrong_type_key_and_takes_the_others(
    store: Store, bad: int, queues: list[str]
) -> None:
    jobs = _jobs(6)
    ids = [j.id for j in jobs]

    async def body(backend: RedisBackend) -> None:
        await backend.enqueue(EnqueueParams(jobs=jobs))
        store.damage(ids[bad])
        claimed = await backend.claim(_claim(5, *queues))
        # The four good ones of the five popped are claimed, and nothing is lost.
        assert [j.id for j in claimed] == [i for i in ids[:5] if i != ids[bad]]
        assert all(j.state is JobState.RUNNING and not j.unreadable for j in claimed)
        assert sorted(store.index("running")) == [j.id for j in claimed]
        assert store.index("queued") == [ids[5]]
        assert store.index("dead") == [ids[bad]]
        (got,) = await backend.get(IdsParams(ids=[ids[bad]]))
        _is_damaged(got, ids[bad])
        page = await backend.query(QueryParams(filter=JobFilter(queue=QUEUE), limit=10))
        listed = {j.id: j for j in page.jobs}
        assert sorted(listed) == ids
        _is_damaged(listed[ids[bad]], ids[bad])
        dead = await backend.query(QueryParams(filter=JobFilter(states=[JobState.DEAD])))
        assert [j.id for j in dead.jobs] == [ids[bad]]
        # It is never popped again: the next claim takes the last good job only.
        assert [j.id for j in await backend.claim(_claim(5, *queues))] == [ids[5]]

    store.run(body)


@pytest.mark.parametrize("bad", [0, 3], ids=["first", "fourth"])
def test_a_burst_worker_runs_every_good_job_and_charges_none_a_crash(
    store: Store, bad: int
) -> None:
    app = Offload(store.url, default_retries=0)

    @app.task(name="t", queue=QUEUE)
    def t(n: int) -> int:
        return n

    try:
        jobs = [t.enqueue(n) for n in range(6)]
        store.damage(jobs[bad].id)
        WorkerThread(app, queues=[QUEUE], burst=True, concurrency=4).__enter__().join()
        good = [j for n, j in enumerate(jobs) if n != bad]
        got = {j.id: j for j in app.backend.blocking.get(IdsParams(ids=[j.id for j in jobs]))}
        for job in good:
            record = got[job.id]
            assert record.state is JobState.SUCCEEDED, record
            assert (record.attempt, record.crashes) == (1, 0), record
        _is_damaged(got[jobs[bad].id], jobs[bad].id)
        assert store.index("queued") == store.index("running") == []
    finally:
        app.close()


def test_offload_jobs_lists_a_wrong_type_key(store: Store) -> None:
    jobs = _jobs(3)
    store.run(lambda backend: backend.enqueue(EnqueueParams(jobs=jobs)))
    store.damage(jobs[1].id)
    result = offload_cli("jobs", "--url", store.url)
    assert result.returncode == 0, result.stderr
    assert all(j.id in result.stdout for j in jobs), result.stdout


# -- every other script ------------------------------------------------------------------------


def test_a_running_job_whose_key_is_overwritten_is_lost_to_its_worker_alone(
    store: Store,
) -> None:
    async def body(backend: RedisBackend) -> None:
        await backend.enqueue(EnqueueParams(jobs=_jobs(2)))
        a, b = await backend.claim(_claim(2))
        store.damage(a.id)
        leases = [LeaseRef(id=j.id, delivery=j.delivery) for j in (a, b)]
        beat = await backend.heartbeat(HeartbeatParams(leases=leases, worker="w", lease_s=60))
        assert beat.lost == [a.id]
        assert store.index("dead") == [a.id] and store.index("running") == [b.id]
        updates = [ProgressUpdate(id=j.id, delivery=j.delivery, progress=0.5) for j in (a, b)]
        await backend.report_progress(ProgressParams(updates=updates))
        done = [Outcome(id=j.id, delivery=j.delivery, kind=OutcomeKind.SUCCEEDED) for j in (a, b)]
        assert (await backend.finish(FinishParams(outcomes=done))).rejected == [a.id]
        got = {j.id: j for j in await backend.get(IdsParams(ids=[a.id, b.id]))}
        assert got[b.id].state is JobState.SUCCEEDED
        _is_damaged(got[a.id], a.id)

    store.run(body)


def test_finish_passes_over_a_key_overwritten_after_the_heartbeat(store: Store) -> None:
    async def body(backend: RedisBackend) -> None:
        await backend.enqueue(EnqueueParams(jobs=_jobs(3)))
        a, b, c = await backend.claim(_claim(3))
        store.damage(b.id)
        done = [
            Outcome(id=j.id, delivery=j.delivery, kind=OutcomeKind.SUCCEEDED) for j in (a, b, c)
        ]
        assert (await backend.finish(FinishParams(outcomes=done))).rejected == [b.id]
        assert sorted(store.index("succeeded")) == [a.id, c.id]
        assert store.index("dead") == [b.id] and store.index("running") == []

    store.run(body)


def test_the_reaper_passes_over_a_wrong_type_key_and_charges_it_no_crash(store: Store) -> None:
    async def body(backend: RedisBackend) -> None:
        await backend.enqueue(EnqueueParams(jobs=_jobs(3)))
        a, b, c = await backend.claim(_claim(3))
        store.damage(b.id)
        store.now += 120  # every lease expired
        reaped = await backend.reap_expired(ReapParams(max_crashes=3))
        assert sorted(r.id for r in reaped) == [a.id, c.id]
        assert all(r.state is JobState.QUEUED for r in reaped)
        assert store.index("dead") == [b.id] and store.index("running") == []
        assert sorted(store.index("queued")) == [a.id, c.id]

    store.run(body)


def test_promotion_passes_over_a_wrong_type_key(store: Store) -> None:
    async def body(backend: RedisBackend) -> None:
        jobs = _jobs(3, delay_s=10)
        await backend.enqueue(EnqueueParams(jobs=jobs))
        store.damage(jobs[0].id)
        store.now += 60
        assert await backend.promote_due() == 3  # each left the scheduled index
        assert store.index("scheduled") == []
        assert store.index("dead") == [jobs[0].id]
        claimed = await backend.claim(_claim(5))
        assert [j.id for j in claimed] == [j.id for j in jobs[1:]]

    store.run(body)


def test_cancel_and_retry_report_a_wrong_type_key_as_dead_and_never_requeue_it(
    store: Store,
) -> None:
    async def body(backend: RedisBackend) -> None:
        jobs = _jobs(3)
        ids = [j.id for j in jobs]
        await backend.enqueue(EnqueueParams(jobs=jobs))
        store.damage(ids[1])
        cancelled = {j.id: j for j in await backend.cancel(IdsParams(ids=ids))}
        _is_damaged(cancelled[ids[1]], ids[1])
        assert cancelled[ids[0]].state is cancelled[ids[2]].state is JobState.CANCELLED
        retried = {j.id: j for j in await backend.retry(IdsParams(ids=ids))}
        _is_damaged(retried[ids[1]], ids[1])
        assert retried[ids[0]].state is retried[ids[2]].state is JobState.QUEUED
        assert store.index("queued") == [ids[0], ids[2]] and store.index("dead") == [ids[1]]

    store.run(body)


def test_a_unique_key_held_by_a_wrong_type_key_is_free(store: Store) -> None:
    async def body(backend: RedisBackend) -> None:
        (holder,) = _jobs(1, key="k")
        (newcomer,) = _jobs(1, key="k")
        await backend.enqueue(EnqueueParams(jobs=[holder]))
        store.damage(holder.id)
        (stored,) = await backend.enqueue(EnqueueParams(jobs=[newcomer]))
        assert stored.id == newcomer.id and stored.state is JobState.QUEUED

    store.run(body)


def test_an_id_whose_key_holds_a_string_is_refused_before_anything_is_stored(
    store: Store,
) -> None:
    async def body(backend: RedisBackend) -> None:
        jobs = _jobs(3)
        store.raw.set(store.key(jobs[1].id), "garbage")  # no job yet: left by another tool
        with pytest.raises(ValueRejected, match=store.key(jobs[1].id).replace("{", r"\{")):
            await backend.enqueue(EnqueueParams(jobs=jobs))
        assert await backend.get(IdsParams(ids=[j.id for j in jobs])) == []
        assert store.index("queued") == [] and store.index("all") == []

    store.run(body)


@pytest.mark.parametrize("how", ["prune", "purge", "delete"])
def test_prune_and_purge_delete_a_wrong_type_key_with_its_job(store: Store, how: str) -> None:
    async def body(backend: RedisBackend) -> None:
        jobs = _jobs(3, batch="b")
        await backend.enqueue(EnqueueParams(jobs=jobs))
        store.damage(jobs[0].id)
        await backend.claim(_claim(5))  # the damaged one is dead, the others running
        if how == "prune":
            store.now += 3600
            deleted = await backend.prune(
                PruneParams(finished_before=store.now, states=[JobState.DEAD])
            )
        elif how == "purge":
            deleted = await backend.purge(PurgeParams(states=[JobState.DEAD]))
        else:  # the running ones stay
            deleted = len(await backend.delete(IdsParams(ids=[j.id for j in jobs])))
        assert deleted == 1
        assert store.raw.exists(store.key(jobs[0].id)) == 0
        assert await backend.get(IdsParams(ids=[jobs[0].id])) == []
        assert len(await backend.get(IdsParams(ids=[j.id for j in jobs]))) == 2

    store.run(body)


def test_a_history_that_does_not_decode_still_reads_and_the_next_attempt_starts_it_afresh(
    store: Store,
) -> None:
    async def body(backend: RedisBackend) -> None:
        (job,) = _jobs(1)
        await backend.enqueue(EnqueueParams(jobs=[job]))
        store.raw.hset(store.key(job.id), "attempts", "written by hand")
        (stored,) = await backend.get(IdsParams(ids=[job.id]))
        # history is for people: the job reads, and runs, without it (no dead-lettering)
        assert stored.attempts == [] and stored.state is JobState.QUEUED
        assert stored.unreadable is None
        (claimed,) = await backend.claim(_claim(1))
        assert claimed.unreadable is None
        done = Outcome(id=job.id, delivery=claimed.delivery, kind=OutcomeKind.SUCCEEDED)
        await backend.finish(FinishParams(outcomes=[done]))
        (stored,) = await backend.get(IdsParams(ids=[job.id]))
        assert [a.number for a in stored.attempts] == [1] and stored.unreadable is None

    store.run(body)


def test_a_history_keeps_the_attempts_that_decode_and_the_job_is_no_less_readable(
    store: Store,
) -> None:
    async def body(backend: RedisBackend) -> None:
        (job,) = _jobs(1, max_attempts=3)
        await backend.enqueue(EnqueueParams(jobs=[job]))
        for _ in range(2):  # two failed attempts, kept in the job's list
            (claimed,) = await backend.claim(_claim(1))
            retry = Outcome(id=job.id, delivery=claimed.delivery, kind=OutcomeKind.RETRY)
            await backend.finish(FinishParams(outcomes=[retry]))
        history = f"{store.prefix}:q:{{{QUEUE}}}:a:{job.id}"
        store.raw.lset(history, 0, '{"number": "one", "outcome": "exploded"}')
        (stored,) = await backend.get(IdsParams(ids=[job.id]))
        assert [a.number for a in stored.attempts] == [2] and stored.unreadable is None
        store.raw.hset(store.key(job.id), "last", "no:such:outcome")  # a told attempt too
        (stored,) = await backend.get(IdsParams(ids=[job.id]))
        assert [a.number for a in stored.attempts] == [2] and stored.unreadable is None

    store.run(body)


# -- what still fails names its key, and is no outage -----------------------------------------


def test_an_index_key_of_the_wrong_type_is_refused_naming_the_key_not_an_outage(
    store: Store,
) -> None:
    queued = f"{store.prefix}:q:{{{QUEUE}}}:queued"

    async def body(backend: RedisBackend) -> None:
        await backend.enqueue(EnqueueParams(jobs=_jobs(1)))
        store.raw.delete(queued)
        store.raw.set(queued, "garbage")
        with pytest.raises(ValueRejected) as caught:
            await backend.claim(_claim(1))
        assert not isinstance(caught.value, BackendError)
        assert "WRONGTYPE" in str(caught.value) and queued in str(caught.value), caught.value

    store.run(body)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("WRONGTYPE Operation against a key holding the wrong kind of value (HGET P:k) "
         "script: 1ae, on @user_script:9.", ValueRejected),
        ("hash value is not an integer", ValueRejected),
        ("user_script:3: attempt to compare nil with number script: 1ae, on @user_script:3.",
         ValueRejected),
        ("OOM command not allowed when used memory > 'maxmemory'.", BackendError),
        ("LOADING Redis is loading the dataset in memory", BackendError),
    ],
)  # fmt: skip
def test_data_errors_are_rejected_values_and_outages_stay_outages(
    message: str, expected: type[Exception]
) -> None:
    translated = translate(redis.exceptions.ResponseError(message))
    assert type(translated) is expected, translated
    if expected is ValueRejected:  # what failed, on which key; not the script's sha
        what = message.partition(" script: ")[0]
        assert what in str(translated) and " script: " not in str(translated), translated
