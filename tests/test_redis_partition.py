"""A Redis worker behind a connection that silently stops carrying data.

A small TCP proxy sits between the worker and the test's redis-server. It can stop
forwarding on the connections it carries without closing them (a failover, a host
gone, a dropped flow: nothing tells the client), or hold back the replies to the
connection an idle worker waits on, so that a claim pipelined behind the BLPOP has run
on the server when the worker is stopped. Deadlines only guard against hangs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from offload import JobState, Offload
from offload.backends.base import ClaimParams, IdsParams, ReapedJob, ReapParams
from offload.backends.redis import redis_backend
from offload.records import JobRecord
from servers import RedisServer
from worker_helpers import WorkerThread, wait_until

DEADLINE_S = 60.0


class _Link:
    """One proxied connection: a pump thread each way."""

    def __init__(self, proxy: SilentProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy, self.client, self.upstream = proxy, client, upstream
        self.dead = False  # forwards nothing either way, closes nothing
        self.hold_replies = False  # keeps the server's replies back
        self.sent = bytearray()  # what the client sent (a window: enough to spot commands)
        self.held = bytearray()
        for src, dst, upward in ((client, upstream, True), (upstream, client, False)):
            threading.Thread(target=self._pump, args=(src, dst, upward), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upward: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.proxy.lock:
                    if self.dead:
                        continue
                    if upward:
                        self.sent = (self.sent + data)[-4096:]
                        if self.proxy.hold_after is not None and self.proxy.hold_after in (
                            bytes(self.sent).upper()
                        ):
                            self.hold_replies = True
                    elif self.hold_replies:
                        self.held += data
                        continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            if not self.dead:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass


class SilentProxy:
    def __init__(self, port: int) -> None:
        self.target = port
        self.lock = threading.Lock()
        self.links: list[_Link] = []
        self.hold_after: bytes | None = None
        self.partitioned = False  # connections opened meanwhile are silent for good too
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                link = _Link(self, client, upstream)
                link.dead = self.partitioned
                self.links.append(link)

    def url(self, prefix: str) -> str:
        return f"redis://127.0.0.1:{self.port}/0?prefix={prefix}"

    def kill_flows(self) -> None:
        """The connections open now stop carrying anything, and stay open; new ones work."""
        with self.lock:
            for link in self.links:
                link.dead = True

    def partition(self) -> None:
        """Every connection open now, or opened before ``heal()``, stops carrying anything."""
        with self.lock:
            self.partitioned = True
            for link in self.links:
                link.dead = True

    def heal(self) -> None:
        """New connections work again; the ones cut stay silent, as after a real partition."""
        with self.lock:
            self.partitioned = False

    def hold_replies_to(self, command: bytes) -> None:
        """From now on, keep back the replies to connections that sent ``command``."""
        with self.lock:
            self.hold_after = command
            for link in self.links:
                if command in bytes(link.sent).upper():
                    link.hold_replies = True

    def close(self) -> None:
        self._listener.close()
        with self.lock:
            for link in self.links:
                for s in (link.client, link.upstream):
                    s.close()


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[SilentProxy]:
    p = SilentProxy(redis_server.port)
    yield p
    p.close()


def echo(n: int) -> int:
    return n


def _app(url: str) -> Offload:
    app = Offload(url, default_retries=0)
    app.task(name="echo")(echo)
    return app


def _stored(app: Offload, job_id: str) -> JobRecord:
    return app.backend.blocking.get(IdsParams(ids=[job_id]))[0]


def _blocked_in_blpop(server: RedisServer) -> bool:
    clients = redis.Redis(host="127.0.0.1", port=server.port).client_list()
    return any(c.get("cmd") == "blpop" and c.get("flags", "").find("b") >= 0 for c in clients)


def test_an_idle_worker_whose_connection_died_silently_claims_a_new_job(
    redis_server: RedisServer, proxy: SilentProxy
) -> None:
    prefix = "p" + uuid.uuid4().hex[:10]
    app, direct = _app(proxy.url(prefix)), _app(redis_server.url(prefix=prefix))
    with WorkerThread(app, concurrency=2, idle_check_s=2.0) as worker:
        first = direct.tasks["echo"].enqueue(1)
        wait_until(lambda: first.state is JobState.SUCCEEDED, DEADLINE_S, "the first job")
        wait_until(lambda: _blocked_in_blpop(redis_server), DEADLINE_S, "the idle worker's BLPOP")
        proxy.kill_flows()  # every connection of the worker goes silent, none is closed
        job = direct.tasks["echo"].enqueue(2)
        wait_until(
            lambda: job.state is JobState.SUCCEEDED,
            DEADLINE_S,
            "the job queued after the silent outage to be claimed and run",
        )
        worker.stop()
    app.close()
    direct.close()


def test_stopping_a_worker_whose_wake_up_claim_is_in_flight_strands_nothing(
    redis_server: RedisServer, proxy: SilentProxy
) -> None:
    prefix = "s" + uuid.uuid4().hex[:10]
    direct = _app(redis_server.url(prefix=prefix))
    before: list[str] = []
    for _ in range(3):  # three graceful stops once made a job that never started dead
        app = _app(proxy.url(prefix))
        with WorkerThread(app, concurrency=1) as worker:
            wait_until(
                lambda: (
                    all(_stored(direct, i).state is JobState.SUCCEEDED for i in before)
                    and _blocked_in_blpop(redis_server)
                ),
                DEADLINE_S,
                "the jobs handed back before to run, then the worker's BLPOP",
            )
            proxy.hold_replies_to(b"BLPOP")  # the claim will run, its reply will not arrive
            job_id = direct.tasks["echo"].enqueue(1).id
            wait_until(
                lambda: _stored(direct, job_id).state is JobState.RUNNING,
                DEADLINE_S,
                "the pipelined claim to take the job on the server",
            )
            worker.stop()
        proxy.hold_after = None
        app.close()
        after = _stored(direct, job_id)
        assert after.state is JobState.QUEUED, after
        assert (after.attempt, after.crashes, after.worker) == (0, 0, None), after
        before.append(job_id)
    direct.close()


def test_a_claim_that_runs_after_its_wait_was_abandoned_takes_nothing_and_passes_the_wake_on(
    redis_server: RedisServer,
) -> None:
    """The server may run a pipelined claim after the worker gave up its wait (the
    connection's close not yet seen): it must take no job, and the wake-up token its
    BLPOP consumed must reach another sleeper."""
    from offload.backends.redis_plans import Scripts, claim_args

    prefix = "a" + uuid.uuid4().hex[:10]
    direct = _app(redis_server.url(prefix=prefix))
    job = direct.tasks["echo"].enqueue(1)
    raw = redis.Redis(host="127.0.0.1", port=redis_server.port)
    wake = f"{prefix}:q:{{default}}:wake"
    raw.delete(wake)  # as the abandoned BLPOP left it
    scripts = Scripts()
    for name in ("unclaim", "claim"):
        raw.script_load(scripts.source[name])
    assert raw.evalsha(scripts.sha["unclaim"], 0, prefix, "", "tok") == 0
    args = claim_args(ClaimParams(queues=["default"], limit=1, worker="gone", lease_s=9), "tok")
    assert raw.evalsha(scripts.sha["claim"], 0, prefix, "", *args) == []
    assert _stored(direct, job.id).state is JobState.QUEUED
    assert raw.llen(wake) == 1
    direct.close()


def _claimed_on_waking(
    redis_server: RedisServer, proxy: SilentProxy, prefix: str
) -> tuple[WorkerThread, Offload, list[str]]:
    """An idle worker whose wake-up claim took five jobs on the server, its reply held back."""
    app, direct = _app(proxy.url(prefix)), _app(redis_server.url(prefix=prefix))
    worker = WorkerThread(app, concurrency=5).__enter__()
    wait_until(lambda: _blocked_in_blpop(redis_server), DEADLINE_S, "the idle worker's BLPOP")
    proxy.hold_replies_to(b"BLPOP")
    ids = [
        j.id
        for j in direct.tasks["echo"].enqueue_many([direct.tasks["echo"].s(n) for n in range(5)])
    ]
    wait_until(
        lambda: all(_stored(direct, i).state is JobState.RUNNING for i in ids),
        DEADLINE_S,
        "the pipelined claim to take the jobs on the server",
    )
    return worker, direct, ids


def test_a_stop_during_a_partition_hands_back_the_wake_up_claim_once_the_store_answers(
    redis_server: RedisServer, proxy: SilentProxy
) -> None:
    """The claim's reply is lost, the worker is stopped, the network heals 0.3 s later:
    the stop hands the jobs back over a new connection, no crash and no attempt charged.
    The join's deadline is shorter than a dead socket's 30 s timeout: the stop must not
    wait on one."""
    prefix = "h" + uuid.uuid4().hex[:10]
    worker, direct, ids = _claimed_on_waking(redis_server, proxy, prefix)
    proxy.partition()  # every connection open now goes silent, and those opened meanwhile
    worker.request_stop()
    time.sleep(0.3)
    proxy.heal()
    worker.join(timeout_s=20)
    worker.worker.app.close()
    for job_id in ids:
        after = _stored(direct, job_id)
        assert after.state is JobState.QUEUED, after
        assert (after.attempt, after.crashes, after.worker) == (0, 0, None), after
    direct.close()


def test_a_stop_that_cannot_reach_the_store_leaves_the_claim_to_its_lease_and_says_so(
    redis_server: RedisServer, proxy: SilentProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """The store stays unreachable for the whole stop: the hand-back is given up within a
    few seconds (not a socket's 30 s timeout), and a log line says the jobs come back when
    their leases expire."""
    prefix = "u" + uuid.uuid4().hex[:10]
    worker, direct, ids = _claimed_on_waking(redis_server, proxy, prefix)
    proxy.partition()
    with caplog.at_level(logging.WARNING, logger="offload.redis"):
        worker.request_stop()
        worker.join(timeout_s=20)
        worker.worker.app.close()
    assert any("lease" in r.getMessage() for r in caplog.records), caplog.text
    assert all(_stored(direct, i).state is JobState.RUNNING for i in ids)
    direct.close()


def test_the_reaper_charges_a_wake_up_claim_never_acknowledged_as_it_cannot_tell_it_started(
    redis_server: RedisServer,
) -> None:
    """Why the reaper cannot spare a claim whose reply was lost: on the server, a wake-up
    claim (token noted) whose reply never reached its worker looks exactly like one whose
    worker read it, started the job, and was killed by that job (SIGKILL, OOM) before its
    first heartbeat, a third of a lease later. The second must be charged a crash, or a job
    that kills its worker at once would never reach max_crashes nor run isolated. Telling
    them apart would need an acknowledgement before each job starts: a second round trip on
    every wake-up, which the pipelined claim exists to save. So the reaper charges both,
    and a graceful stop hands back what it abandoned (unclaim by token) instead."""
    from offload.backends.redis_plans import Scripts, claim_args

    prefix = "r" + uuid.uuid4().hex[:10]
    direct = _app(redis_server.url(prefix=prefix))
    job = direct.tasks["echo"].enqueue(1)
    raw = redis.Redis(host="127.0.0.1", port=redis_server.port)
    scripts = Scripts()
    raw.script_load(scripts.source["claim"])
    params = ClaimParams(queues=["default"], limit=1, worker="gone", lease_s=0.05)
    claimed = raw.evalsha(scripts.sha["claim"], 0, prefix, "", *claim_args(params, "tok"))
    assert len(claimed) == 1  # the job (it took its limit: no idle hint)
    assert raw.hget(f"{prefix}:g:{{{prefix}}}:claim:tok", job.id) == b"1"  # noted, unacknowledged
    url = redis_server.url(prefix=prefix)
    wait_until(
        lambda: bool(asyncio.run(_reap_once(url))),
        DEADLINE_S,
        "the claim's lease to expire and be reaped",
    )
    after = _stored(direct, job.id)
    assert (after.state, after.crashes, after.attempt) == (JobState.QUEUED, 1, 1), after
    direct.close()


async def _reap_once(url: str) -> list[ReapedJob]:
    backend = redis_backend(url)
    try:
        return await backend.reap_expired(ReapParams(max_crashes=3))
    finally:
        await backend.close()


def test_a_stop_does_not_wait_on_a_claim_whose_reply_was_lost_and_hands_it_back(
    redis_server: RedisServer, proxy: SilentProxy
) -> None:
    """A plain claim (a worker's first, or one after its slots freed up) runs on the server
    and its reply never comes: the stop abandons it rather than waiting out the silent
    connection's 30 s timeout (the join's deadline is shorter), and hands its jobs back."""
    from offload.backends.redis_plans import Scripts

    prefix = "c" + uuid.uuid4().hex[:10]
    app, direct = _app(proxy.url(prefix)), _app(redis_server.url(prefix=prefix))
    ids = [
        j.id
        for j in direct.tasks["echo"].enqueue_many([direct.tasks["echo"].s(n) for n in range(5)])
    ]
    proxy.hold_replies_to(Scripts().sha["claim"].upper().encode())  # the claim's, not the wait's
    worker = WorkerThread(app, concurrency=5).__enter__()
    wait_until(
        lambda: all(_stored(direct, i).state is JobState.RUNNING for i in ids),
        DEADLINE_S,
        "the worker's first claim to take the jobs on the server",
    )
    worker.request_stop()
    worker.join(timeout_s=20)
    app.close()
    for job_id in ids:
        after = _stored(direct, job_id)
        assert after.state is JobState.QUEUED, after
        assert (after.attempt, after.crashes, after.worker) == (0, 0, None), after
    direct.close()
