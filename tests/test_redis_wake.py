"""An idle Redis worker wakes and takes its work in one round trip.

The claim is pipelined behind the worker's ``BLPOP`` on the same connection, so
Redis runs it the moment a wake-up token arrives; a claim that runs the queues
dry says so, and the worker goes back to sleep without asking again. These tests
count the scripts a real server runs (``MONITOR``), never how long anything took.
"""

from __future__ import annotations

import asyncio
import collections
import threading

import redis

from offload import JobState, Offload
from offload.backends.base import ClaimParams, EnqueueParams, WaitParams
from offload.backends.redis import RedisBackend, Scripts, redis_backend
from offload.records import NewJob
from servers import RedisServer
from worker_helpers import WorkerThread, wait_until

DEADLINE_S = 30.0
SENTINEL = "end-of-count"


class ScriptCounter(threading.Thread):
    """Counts the commands and scripts the server runs, by name, from MONITOR's stream."""

    def __init__(self, server: RedisServer) -> None:
        super().__init__(daemon=True)
        self._client = redis.Redis(host="127.0.0.1", port=server.port)
        self._names = {sha: name for name, sha in Scripts().sha.items()}
        self.counts: collections.Counter[str] = collections.Counter()
        #: command or script name -> the client connections (ports) that sent it
        self.senders: collections.defaultdict[str, set[str]] = collections.defaultdict(set)
        self._listening = threading.Event()

    def run(self) -> None:
        with self._client.monitor() as monitor:
            self._listening.set()
            for event in monitor.listen():
                command = event["command"].split()
                if command == ["ECHO", SENTINEL]:
                    return
                if not command:
                    continue
                name = command[0].upper()
                if name == "EVALSHA":
                    name = self._names.get(command[1], "?")
                self.counts[name] += 1
                self.senders[name].add(event["client_port"])

    def __enter__(self) -> ScriptCounter:
        self.start()
        self._listening.wait(DEADLINE_S)
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.echo(SENTINEL)  # every command before it has been counted by then
        self.join(DEADLINE_S)


def test_an_idle_worker_claims_each_trickled_job_along_with_its_blpop(
    scratch_server: RedisServer,
) -> None:
    app = Offload(scratch_server.url(prefix="trickle"), default_retries=0)

    @app.task
    def tick(n: int) -> int:
        return n

    jobs = 20
    with WorkerThread(app, concurrency=4):
        warm = tick.enqueue(-1)  # the worker's first claim and its leadership settle
        wait_until(lambda: warm.state is JobState.SUCCEEDED, DEADLINE_S, "the first job")
        with ScriptCounter(scratch_server) as counter:
            for n in range(jobs):
                job = tick.enqueue(n)  # one at a time: the worker is idle for each
                wait_until(lambda job=job: job.state is JobState.SUCCEEDED, DEADLINE_S, "a job")
    app.close()
    # Without claim-on-wake a job cost two claims (the wake's, then an empty one) and
    # before that three (with a peek); now the claim that wakes with the token is the one.
    assert counter.counts["enqueue"] == jobs
    assert jobs <= counter.counts["claim"] <= jobs + 1, counter.counts
    assert counter.counts["peek"] == 0, counter.counts
    # ... and it travels with the BLPOP, on the waiting connection: one round trip.
    assert counter.senders["claim"] == counter.senders["BLPOP"], counter.senders


def _waker(backend: RedisBackend, queue: str, limit: int) -> WaitParams:
    claim = ClaimParams(queues=[queue], limit=limit, worker="waker", lease_s=60.0)
    return WaitParams(queues=[queue], timeout_s=60.0, claim=claim)


def _job(n: int, queue: str) -> NewJob:
    return NewJob(id=f"job-{queue}-{n}", task="t", queue=queue, payload=b'{"args":[1]}')


async def _wait_while_another_client_enqueues(
    backend: RedisBackend, queue: str, limit: int, count: int
) -> list[str]:
    def producer() -> None:
        backend.blocking.enqueue(EnqueueParams(jobs=[_job(n, queue) for n in range(count)]))

    waiting = asyncio.create_task(backend.wait(_waker(backend, queue, limit)))
    await asyncio.sleep(0.05)  # let the BLPOP block first; the assertions hold either way
    await asyncio.to_thread(producer)
    jobs = await asyncio.wait_for(waiting, DEADLINE_S)
    assert jobs is not None, "the Redis store claims on waking"
    assert all(j.state is JobState.RUNNING and j.worker == "waker" for j in jobs)
    return [j.id for j in jobs]


def test_the_wake_up_brings_the_claimed_jobs_and_leaves_the_rest(
    scratch_server: RedisServer,
) -> None:
    backend = redis_backend(scratch_server.url(prefix="waking"))

    async def main() -> None:
        taken = await _wait_while_another_client_enqueues(backend, "q", limit=2, count=3)
        assert taken == ["job-q-0", "job-q-1"]
        rest = await backend.claim(ClaimParams(queues=["q"], limit=5, worker="w", lease_s=60))
        assert [j.id for j in rest] == ["job-q-2"]
        await backend.close()

    asyncio.run(main())


def test_a_server_that_forgot_its_scripts_still_hands_over_the_job(
    scratch_server: RedisServer,
) -> None:
    backend = redis_backend(scratch_server.url(prefix="forgetful"))

    async def main() -> None:
        await backend.stats()  # connected, scripts loaded
        redis.Redis(host="127.0.0.1", port=scratch_server.port).script_flush()
        assert await _wait_while_another_client_enqueues(backend, "f", 5, 1) == ["job-f-0"]
        await backend.close()

    asyncio.run(main())
