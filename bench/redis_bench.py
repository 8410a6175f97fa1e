"""Redis benchmark: offload against Celery, RQ, Dramatiq, Huey, arq, SAQ and TaskIQ.

Run it with ``bench/run_redis.sh`` (which makes ``bench/.venv-peers-redis`` with
every library in one interpreter, then runs this file); ``--smoke`` is the
quick variant, about a minute (300 jobs, RQ 100, one repeat, 50 latency jobs,
a 3 s idle window, new workers given 0.5 s to settle, and workers killed once
measured). Options: ``--jobs N`` (default 20000), ``--repeat R`` (3),
``--concurrency C`` per worker process (50), ``--latency-jobs M`` (500; smoke
50), ``--idle-s S`` (the idle window: 60; smoke 3; 0 leaves it out),
``--mixed-jobs K`` (N/10), ``--libs offload,celery,...``, ``--cap LIB=N``
(jobs per workload for a library too slow for N; see RQ).
The method is the PostgreSQL benchmark's (``pg_bench.py``), with the shared
parts in ``benchlib.py``.

Setup
    One throwaway ``redis-server`` (started here: a temp folder, a free port on
    127.0.0.1, ``--save "" --appendonly no``, so no write ever waits for a disk
    and none forks for a snapshot; the machine's own Redis is never used). The
    same server and database 0 serve every library in turn, and the database is
    flushed (``FLUSHDB``) before each enqueue workload, so each library and each
    workload starts from an empty keyspace. Every library runs in its natural,
    documented configuration (see ``offload_app.py`` and ``peers/``): default
    serializer, no result storage where it is optional, workers started by the
    library's own command with logging at WARNING. Libraries take turns within
    each repeat so that drift on the machine hits all alike.

    Workers: 2 processes run jobs for every library. offload, RQ, Huey, arq and
    SAQ are started twice (2 commands); Celery, Dramatiq and TaskIQ start one
    command that supervises its own 2 worker processes (Celery: a parent that
    fetches and acknowledges, 2 prefork children that run jobs). CPU is counted
    for the whole process tree, supervisors and forked children included.

    Concurrency: C = 50 jobs at once per worker process where the library runs
    several jobs in one process: async slots (offload ``-c``, arq ``max_jobs``,
    SAQ ``concurrency``, TaskIQ ``--max-async-tasks``) or threads (Dramatiq
    ``--threads``, Huey ``--workers`` with thread workers), as in the PostgreSQL
    benchmark: one generous value measures each library's fetch and
    acknowledge path rather than its default (threads cost more than async
    slots, but Huey drained about as fast with 8 threads per consumer as with
    50, and Dramatiq no slower with 50 than with its default 8). Celery's
    prefork pool and RQ run one job per process by design. The task is an
    ``async def`` no-op taking one int where the library runs coroutines
    (offload, arq, SAQ, TaskIQ) and a ``def`` no-op elsewhere; the mixed
    workload's ``sleepy`` task awaits ``asyncio.sleep(0.01)`` or calls
    ``time.sleep(0.01)`` alike.

    RQ: its default ``Worker`` forks a new process for every job (its
    documented model: a job cannot leak state into the next), about 14 ms of
    CPU per job here. That is the configuration measured (not ``SimpleWorker``);
    ``DEFAULT_CAPS`` gives it 5,000 jobs per workload in full runs so that its
    drain stays near a minute (``SMOKE_CAPS``: 100 in smoke runs), and the
    output says so.

    Idle workers: offload, Celery, RQ, Huey, SAQ and TaskIQ wait on a blocking
    Redis call; arq polls its queue every 0.5 s (``poll_delay``) and Dramatiq's
    consumer polls with a growing back-off when its queue is empty, both by
    default, which shows in their latency. What waiting costs is the idle
    workload's.

How "done" is counted (the same for all)
    Each job's first statement is ``jobsink.record(seq)``: one unbuffered
    append of a fixed-width line to a file of its own worker process. The
    benchmark counts started jobs from those files' sizes. Once all N have run,
    it also waits until the library's keys in Redis show them settled: nothing
    queued or in flight, and every job recorded finished where the library
    records that (offload: N in its ``succeeded`` index; SAQ: no incomplete
    job; Celery: no unacknowledged message; RQ: queue and started registry
    empty; Dramatiq: no message left in its ``.msgs`` hash; arq: queue zset
    empty; TaskIQ: no pending or unread stream entry; Huey takes a job off its
    list with ``BRPOP`` and keeps no in-flight record, so for Huey "settled"
    equals "ran"). Afterwards every sequence number must have run: a job that
    never ran stops the benchmark; a job that ran twice (at-least-once
    delivery) is counted and reported under the table.

Workloads (each repeated ``R`` times; medians and ranges are reported)
    enqueue, sync / async
        One client, one call per job, N sequential calls, with each library's
        sync API (offload ``task.enqueue``, Celery ``task.delay``, RQ
        ``queue.enqueue``, Dramatiq ``actor.send``, Huey ``task(i)``) and async
        API (offload ``task.enqueue_async``, arq ``pool.enqueue_job``, SAQ
        ``queue.enqueue``, TaskIQ ``task.kiq``). Celery, RQ, Dramatiq and Huey
        have no asyncio API; arq, SAQ and TaskIQ have no sync one.
    enqueue, bulk
        Where a bulk API exists, in chunks of 1000: offload
        ``task.enqueue_many``; RQ ``queue.enqueue_many`` (one pipeline). The
        others have none that writes many jobs at once (Celery's ``group``,
        Dramatiq's ``group``, Huey's ``map`` and SAQ's ``map`` enqueue one by
        one).
    drain
        The N jobs left queued by the last enqueue workload; the clock starts
        right before the worker processes are spawned (so it includes their
        start-up) and stops when all N have run ("all ran") and when all N are
        settled in Redis. Also reported: first job start to last job start (the
        steady rate, without start-up).
    latency
        Idle workers (those of the idle workload, after its window; then 5
        warm-up jobs), then one client enqueues one job every 10 ms for M
        jobs (async API where the library has one, else sync). For each job:
        its start time in the worker minus ``time.time()`` taken right before
        the client's enqueue call; p50, p95, p99 in ms.
    idle
        The latency workload's workers, measured before its client connects:
        2 worker processes started with nothing queued, given 2 s to settle
        (smoke 0.5 s) and then until their trees use under 5% of a core per
        worker process (start-up done; 15 s at most), then a window of S
        seconds (``--idle-s``: 60; smoke 3) in which nothing else talks to
        Redis. Over the window, per worker process (each tree's total divided
        by 2, so Celery's, Dramatiq's and TaskIQ's supervisors count in):
        CPU as % of a core (the scheduler's exact run time of every thread,
        from ``/proc/<pid>/task/*/schedstat``), wake-ups/s (voluntary and
        involuntary context switches of every thread), Redis round trips/s
        (``total_reads_processed``: one per request, a pipeline or a script
        call counting one) and commands/s (``total_commands_processed``: the
        commands inside scripts and ``MULTI`` too), less the benchmark's own
        ``INFO``; and RSS at the window's end. The JSON adds PSS (forked
        children's shared pages split among them), redis-server's CPU and the
        rate of each command the workers sent.
    mixed
        N/10 jobs (``--mixed-jobs``; RQ's cap applies first) of the ``sleepy``
        task, each sleeping 10 ms, queued (bulk API where there is one),
        then 2 freshly started worker processes drain them: jobs/s from the
        first job's start to the last one's end (a ``sleepy`` job records
        when it ends; worker start-up is left out). This shows how many jobs
        run at once: 2 processes with C async slots or threads each, against
        Celery's 2 prefork children and RQ's one forked job per worker at a
        time. Every job must have run (duplicates counted, as in the drain).

CPU per job
    Read from /proc, so time lost to other programs on the machine does not
    count: the client process (enqueue), the worker process trees (drain, from
    the first job on, so start-up is left out; latency, whole window,
    including the libraries' idle polling and upkeep), and redis-server (all
    of it: only one library uses it at a time). Clock ticks are 10 ms, so
    smoke-run values are coarse.

Output
    One table: a row per workload, a column per library, and "offload vs best
    peer" where > 1 always means offload is better (jobs/s: offload / best;
    ms, CPU, idle costs and memory: best / offload; "n/a" where offload's or a
    peer's figure is 0, as CPU read in 10 ms ticks can be in a smoke run,
    except in the idle rows, where 0 is measured: a peer at 0 makes 0.00x). Full runs write
    ``bench/results/redis-<date>.json``; smoke runs write to a temporary file
    unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import jobsink
import redis
from benchlib import (
    BENCH,
    SLEEPY_S,
    WARMUP_SEQ,
    Row,
    Workers,
    chunks,
    git_state,
    idle_window,
    kill_all_workers,
    latency_summary,
    log,
    mixed_rate,
    process_cpu_s,
    run_counts,
    send_paced,
    settle,
    summarize,
    table,
    tail,
    tree_cpu_s,
    versions,
    wait_for,
)

BIN = Path(sys.executable).parent
#: Celery's warning, on every start, that it runs as root (as everything on the bench machine).
CELERY_AS_ROOT = (
    "SecurityWarning: You're running the worker with superuser privileges",
    "absolutely not recommended!",
    "Please specify a different user using the --uid option.",
    "User information: uid=",
    "_warn_or_raise_security_error(",
)
#: Jobs per workload for libraries whose drain of 20,000 would take many minutes (full runs).
DEFAULT_CAPS = {"rq": 5_000}
#: The same for smoke runs, which must stay near a minute: RQ's drain of 300 takes 6 s.
SMOKE_CAPS = {"rq": 100}


# -- the server -------------------------------------------------------------------


class RedisServer:
    """A throwaway redis-server on a free port in a temp folder, without persistence.

    The benchmark's own rather than the tests' helper: it needs the server's pid
    (for its CPU) and one fixed configuration, whatever the tests need next.
    """

    CONFIG = ("--save", "", "--appendonly", "no")

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found; bench/run_redis.sh installs it")
        self.binary = binary
        self.root = tempfile.mkdtemp(prefix="offload-redis-bench-")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        log_path = os.path.join(self.root, "server.log")
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.root, "--logfile", log_path,
                "--daemonize", "no", *self.CONFIG]  # fmt: skip
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{tail(log_path)}")
            time.sleep(0.05)
        client.close()

    def version(self) -> str:
        client = redis.Redis.from_url(self.url)
        try:
            return str(cast(dict[str, Any], client.info("server"))["redis_version"])
        finally:
            client.close()

    def destroy(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


# -- the libraries ----------------------------------------------------------------


class Library:
    """What the benchmark needs from each library: clients, worker commands, two counts."""

    name = ""
    dist = ""  # the distribution whose version is reported
    has_sync = True
    has_async = False
    has_bulk = False
    note = ""  # printed under the table

    def __init__(self, url: str, r: redis.Redis) -> None:
        self.url = url
        self.r = r  # the benchmark's own connection, for FLUSHDB and the "settled" counts

    def count(self, command: str, key: str) -> int:
        """``LLEN``, ``HLEN`` or ``ZCARD`` of one key, on the benchmark's own connection."""
        reply = {"LLEN": self.r.llen, "HLEN": self.r.hlen, "ZCARD": self.r.zcard}[command](key)
        return int(cast(int, reply))  # redis-py types a sync reply as ``T | Awaitable[T]``

    def after_flush(self) -> None:
        """Put back what the library expects to find once the database is empty."""

    # Each client enqueues the task named ``task``: "noop", or "sleepy" for the mixed workload.

    def sync_client(
        self, task: str = "noop"
    ) -> contextlib.AbstractContextManager[Callable[[int], Any]]:
        raise NotImplementedError

    def bulk_client(
        self, task: str = "noop"
    ) -> contextlib.AbstractContextManager[Callable[[list[int]], Any]]:
        raise NotImplementedError

    def async_client(
        self, task: str = "noop"
    ) -> contextlib.AbstractAsyncContextManager[Callable[[int], Awaitable[Any]]]:
        raise NotImplementedError

    async def prequeue(self, n: int, task: str) -> None:
        """Enqueue jobs 0..n-1 of ``task`` by the fastest API the library has (untimed)."""
        if self.has_bulk:
            with self.bulk_client(task) as enqueue_many:
                for seqs in chunks(n, 1000):
                    enqueue_many(seqs)
        elif self.has_sync:
            with self.sync_client(task) as enqueue:
                for i in range(n):
                    enqueue(i)
        else:
            async with self.async_client(task) as enqueue_async:
                for i in range(n):
                    await enqueue_async(i)

    @contextlib.asynccontextmanager
    async def latency_client(self) -> AsyncIterator[Callable[[int], Awaitable[Any]]]:
        """The async API where there is one, else the sync API called from the loop."""
        if self.has_async:
            async with self.async_client() as enqueue:
                yield enqueue
            return
        with self.sync_client() as enqueue_sync:

            async def enqueue(i: int) -> None:
                enqueue_sync(i)

            yield enqueue

    def worker_argvs(self, concurrency: int) -> list[list[str]]:
        raise NotImplementedError

    def queued(self) -> int:
        """Jobs waiting in Redis (checked before a drain)."""
        raise NotImplementedError

    def settled(self, n: int) -> bool:
        """Nothing queued or in flight, and all n recorded finished where the library does."""
        raise NotImplementedError

    def noise(self, line: str) -> bool:
        """A line the workers print on every start even at WARNING."""
        return False

    async def close(self) -> None:
        pass


class OffloadLib(Library):
    name = dist = "offload"
    has_async = has_bulk = True

    def __init__(self, url: str, r: redis.Redis) -> None:
        super().__init__(url, r)
        import offload_app

        self.app = offload_app.app
        self.tasks = {"noop": offload_app.noop, "sleepy": offload_app.sleepy}

    def after_flush(self) -> None:
        self.app.backend.blocking.migrate()  # what offload's first use does on an empty store

    def _counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for queue in self.app.backend.blocking.stats():
            for state, count in queue.counts.items():
                totals[str(state)] = totals.get(str(state), 0) + count
        return totals

    def queued(self) -> int:
        return self._counts().get("queued", 0)

    def settled(self, n: int) -> bool:
        return self._counts().get("succeeded", 0) >= n

    @contextlib.contextmanager
    def sync_client(self, task: str = "noop") -> Iterator[Callable[[int], Any]]:
        self.app.backend.blocking.now()  # connected and warm before the clock starts
        yield self.tasks[task].enqueue

    @contextlib.contextmanager
    def bulk_client(self, task: str = "noop") -> Iterator[Callable[[list[int]], Any]]:
        self.app.backend.blocking.now()
        chosen = self.tasks[task]
        yield lambda seqs: chosen.enqueue_many([chosen.s(i) for i in seqs])

    @contextlib.asynccontextmanager
    async def async_client(
        self, task: str = "noop"
    ) -> AsyncIterator[Callable[[int], Awaitable[Any]]]:
        await self.app.backend.now()
        yield self.tasks[task].enqueue_async

    def worker_argvs(self, concurrency: int) -> list[list[str]]:
        argv = [sys.executable, "-m", "offload", "worker", "offload_app:app",
                "-c", str(concurrency), "--log-level", "WARNING"]  # fmt: skip
        return [argv, argv]

    async def close(self) -> None:
        await self.app.aclose()


class CeleryLib(Library):
    name = dist = "celery"
    note = "celery: 1 worker, prefork pool of 2 processes (Celery's default on 2 cores)"

    def __init__(self, url: str, r: redis.Redis) -> None:
        super().__init__(url, r)
        from peers import celery_app

        self.app = celery_app.app
        self.tasks = {"noop": celery_app.noop, "sleepy": celery_app.sleepy}

    def after_flush(self) -> None:
        # kombu routes a message through a binding key that the queue's declaration
        # writes; a producer declares it once per connection, so write it again
        with self.app.connection_for_write() as conn:
            for queue in self.app.amqp.queues.values():
                queue.bind(conn).declare()

    def queued(self) -> int:
        return self.count("LLEN", "celery")

    def settled(self, n: int) -> bool:
        return self.count("LLEN", "celery") == 0 and self.count("HLEN", "unacked") == 0

    @contextlib.contextmanager
    def sync_client(self, task: str = "noop") -> Iterator[Callable[[int], Any]]:
        yield self.tasks[task].delay

    def worker_argvs(self, concurrency: int) -> list[list[str]]:
        # --quiet only leaves out the start-up banner, which is printed at any log level
        return [[sys.executable, "-m", "celery", "-A", "peers.celery_app", "--quiet", "worker",
                 "--loglevel=WARNING", "--concurrency=2"]]  # fmt: skip

    def noise(self, line: str) -> bool:
        return any(part in line for part in CELERY_AS_ROOT)

    async def close(self) -> None:
        self.app.close()


class RqLib(Library):
    name = dist = "rq"
    has_bulk = True
    note = "rq: default Worker, which forks a new process for every job"

    def __init__(self, url: str, r: redis.Redis) -> None:
        super().__init__(url, r)
        from peers import rq_app
        from rq import Queue

        self.funcs = {"noop": rq_app.noop, "sleepy": rq_app.sleepy}
        self.queue = Queue(connection=redis.Redis.from_url(url))

    def queued(self) -> int:
        return int(self.queue.count)

    def settled(self, n: int) -> bool:
        return (
            self.queue.count == 0
            and self.count("LLEN", self.queue.intermediate_queue_key) == 0
            and self.queue.started_job_registry.count == 0
        )

    @contextlib.contextmanager
    def sync_client(self, task: str = "noop") -> Iterator[Callable[[int], Any]]:
        queue, func = self.queue, self.funcs[task]
        yield lambda i: queue.enqueue(func, i)

    @contextlib.contextmanager
    def bulk_client(self, task: str = "noop") -> Iterator[Callable[[list[int]], Any]]:
        from rq import Queue

        queue, func = self.queue, self.funcs[task]
        yield lambda seqs: queue.enqueue_many([Queue.prepare_data(func, (i,)) for i in seqs])

    def worker_argvs(self, concurrency: int) -> list[list[str]]:
        argv = [str(BIN / "rq"), "worker", "--url", self.url, "--logging_level", "WARNING",
                "--results-ttl", "0"]  # fmt: skip
        return [argv, argv]


class DramatiqLib(Library):
    name = dist = "dramatiq"
    note = "dramatiq: 1 command, --processes 2 --threads C"

    def __init__(self, url: str, r: redis.Redis) -> None:
        super().__init__(url, r)
        from peers import dramatiq_app

        self.broker = dramatiq_app.broker
        self.actors = {"noop": dramatiq_app.noop, "sleepy": dramatiq_app.sleepy}

    def queued(self) -> int:
        return self.count("LLEN", "dramatiq:default")

    def settled(self, n: int) -> bool:
        msgs = self.count("HLEN", "dramatiq:default.msgs")  # a message leaves it when acked
        return self.count("LLEN", "dramatiq:default") == 0 and msgs == 0

    @contextlib.contextmanager
    def sync_client(self, task: str = "noop") -> Iterator[Callable[[int], Any]]:
        yield self.actors[task].send

    def worker_argvs(self, concurrency: int) -> list[list[str]]:
        return [[sys.executable, "-m", "dramatiq", "peers.dramatiq_app", "--processes", "2",
                 "--threads", str(concurrency), "--skip-logging"]]  # fmt: skip

    async def close(self) -> None:
        self.broker.close()


class HueyLib(Library):
    name = dist = "huey"
    note = "huey: 2 consumers, C thread workers each"

    def __init__(self, url: str, r: redis.Redis) -> None:
        super().__init__(url, r)
        from peers import huey_app

        self.huey = huey_app.huey
        self.tasks = {"noop": huey_app.noop, "sleepy": huey_app.sleepy}

    def queued(self) -> int:
        return int(self.huey.pending_count())

    def settled(self, n: int) -> bool:
        return self.queued() == 0

    @contextlib.contextmanager
    def sync_client(self, task: str = "noop") -> Iterator[Callable[[int], Any]]:
        yield self.tasks[task]

    def worker_argvs(self, concurrency: int) -> list[list[str]]:
        argv = [sys.executable, "-m", "huey.bin.huey_consumer", "peers.huey_app.huey",
                "--workers", str(concurrency), "--worker-type", "thread", "--quiet"]  # fmt: skip
        return [argv, argv]


class ArqLib(Library):
    name = dist = "arq"
    has_sync = False
    has_async = True

    def queued(self) -> int:
        return self.count("ZCARD", "arq:queue")

    def settled(self, n: int) -> bool:
        return self.count("ZCARD", "arq:queue") == 0  # a job leaves the queue zset when it finishes

    @contextlib.asynccontextmanager
    async def async_client(
        self, task: str = "noop"
    ) -> AsyncIterator[Callable[[int], Awaitable[Any]]]:
        from arq import create_pool
        from arq.connections import RedisSettings

        pool = await create_pool(RedisSettings.from_dsn(self.url))
        try:
            yield lambda i: pool.enqueue_job(task, i)
        finally:
            await pool.aclose()

    def worker_argvs(self, concurrency: int) -> list[list[str]]:
        argv = [sys.executable, "-m", "peers.arq_app"]
        return [argv, argv]


class SaqLib(Library):
    name = dist = "saq"
    has_sync = False
    has_async = True

    def queued(self) -> int:
        return self.count("LLEN", "saq:default:queued")

    def settled(self, n: int) -> bool:
        return self.count("ZCARD", "saq:default:incomplete") == 0

    @contextlib.asynccontextmanager
    async def async_client(
        self, task: str = "noop"
    ) -> AsyncIterator[Callable[[int], Awaitable[Any]]]:
        from saq import Queue

        queue = Queue.from_url(self.url)
        await queue.connect()
        try:
            yield lambda i: queue.enqueue(task, i=i)
        finally:
            await queue.disconnect()

    def worker_argvs(self, concurrency: int) -> list[list[str]]:
        argv = [sys.executable, "-m", "saq", "peers.saq_app.settings"]
        return [argv, argv]


class TaskiqLib(Library):
    name = dist = "taskiq"
    has_sync = False
    has_async = True
    note = "taskiq: 1 command, --workers 2 --max-async-tasks C"

    def __init__(self, url: str, r: redis.Redis) -> None:
        super().__init__(url, r)
        from peers import taskiq_app

        self.broker = taskiq_app.broker
        self.tasks = {"noop": taskiq_app.noop, "sleepy": taskiq_app.sleepy}

    def _group(self) -> dict[str, Any]:
        """The workers' consumer group of the stream: its ``pending`` and ``lag`` counts."""
        if not self.r.exists("taskiq"):
            return {}
        groups = cast(list[dict[str, Any]], self.r.xinfo_groups("taskiq"))
        return groups[0] if groups else {}

    def queued(self) -> int:
        return int(self._group().get("lag") or 0)

    def settled(self, n: int) -> bool:
        group = self._group()
        return bool(group) and group["pending"] == 0 and group["lag"] == 0

    @contextlib.asynccontextmanager
    async def async_client(
        self, task: str = "noop"
    ) -> AsyncIterator[Callable[[int], Awaitable[Any]]]:
        await self.broker.startup()  # creates the stream's consumer group (gone after FLUSHDB)
        try:
            yield self.tasks[task].kiq
        finally:
            await self.broker.shutdown()

    def worker_argvs(self, concurrency: int) -> list[list[str]]:
        return [[sys.executable, "-m", "taskiq", "worker", "peers.taskiq_app:broker",
                 "--workers", "2", "--max-async-tasks", str(concurrency),
                 "--log-level", "WARNING"]]  # fmt: skip


LIBRARIES: dict[str, type[Library]] = {
    lib.name: lib
    for lib in (OffloadLib, CeleryLib, RqLib, DramatiqLib, HueyLib, ArqLib, SaqLib, TaskiqLib)
}


# -- CPU accounting ---------------------------------------------------------------


class CpuMeter:
    """CPU used by the client, the worker process trees and redis-server since creation."""

    def __init__(self, server_pid: int, workers: list[int] | None = None) -> None:
        self.server_pid = server_pid
        self.workers = workers or []
        self._client = time.process_time()
        self._workers = tree_cpu_s(self.workers)
        self._server = process_cpu_s([server_pid])

    def per_job_us(self, n: int, prefix: str) -> dict[str, float]:
        server = process_cpu_s([self.server_pid]) - self._server
        out = {f"{prefix}_redis_cpu_us": 1e6 * server / n}
        if self.workers:
            out[f"{prefix}_worker_cpu_us"] = 1e6 * (tree_cpu_s(self.workers) - self._workers) / n
        else:
            out[f"{prefix}_client_cpu_us"] = 1e6 * (time.process_time() - self._client) / n
        return out


class RedisCounters:
    """The server's running totals of requests, less those of this reader's own ``INFO``.

    ``total_reads_processed`` counts reads from client sockets: one per request
    sent (a pipeline or a script call is one), so round trips.
    ``total_commands_processed`` counts commands, those run inside a Lua script
    or a ``MULTI`` included. Per-command counts come from ``INFO commandstats``.
    Each reading is one ``INFO``, which adds one read and one command to the
    totals; the running count of readings is subtracted from both.
    """

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url)
        self.r.ping()  # connected (and its hello sent) before the first reading
        self.readings = 0

    def __call__(self) -> dict[str, float]:
        info = cast(dict[str, Any], self.r.info("stats", "commandstats"))
        self.readings += 1
        out = {
            "redis_round_trips": float(info["total_reads_processed"] - self.readings),
            "redis_commands": float(info["total_commands_processed"] - self.readings),
        }
        for key, value in info.items():
            if key.startswith("cmdstat_") and key != "cmdstat_info":
                out[f"redis_calls_{key.removeprefix('cmdstat_')}"] = float(value["calls"])
        return out

    def close(self) -> None:
        self.r.close()


# -- the workloads ----------------------------------------------------------------


def check_ran(name: str, records: list[tuple[int, float]], n: int, what: str) -> int:
    """Every job ran; returns how many ran more than once, which is reported, not fatal.

    Several of these libraries deliver at least once, so a job may legitimately
    run twice (a recovery sweep racing a job that had just started); the
    count shows under the table. A job that never ran stops the benchmark.
    """
    runs, duplicates, missing = run_counts(records, n)
    if missing:
        raise RuntimeError(f"{name} {what}: {missing} of {n} jobs never ran ({runs} runs)")
    if duplicates:
        log(f"{name} {what}: {duplicates} job(s) ran a second time")
    return duplicates


class Bench:
    """One run's fixed context: the server, the workers' environment, a scratch folder."""

    def __init__(
        self,
        server: RedisServer,
        env: dict[str, str],
        concurrency: int,
        smoke: bool,
        idle_s: float,
    ) -> None:
        self.server = server
        self.env = env
        self.concurrency = concurrency
        self.idle_s = idle_s  # the idle window
        self.counters = RedisCounters(server.url)
        # A smoke run checks the harness: it lets new workers settle for 0.5 s instead
        # of 2 (then until quiet, in both), gives the latency run's warm-up jobs 0.1 s
        # instead of 0.5 to be over, and kills workers once measured instead of
        # waiting for their graceful shutdown.
        self.settle_s = 0.5 if smoke else 2.0
        self.settle_max_s = 5.0 if smoke else 15.0
        self.after_warmup_s = 0.1 if smoke else 0.5
        self.grace_s = 0.0 if smoke else 20.0

    def reset(self, lib: Library) -> None:
        lib.r.flushdb()
        lib.after_flush()

    def workers(self, lib: Library, out_dir: str) -> Workers:
        argvs = lib.worker_argvs(self.concurrency)
        return Workers(
            lib.name, argvs, self.concurrency, out_dir, self.env, lib.noise, self.grace_s
        )

    def enqueue_sync(self, lib: Library, n: int) -> dict[str, float]:
        self.reset(lib)
        with lib.sync_client() as enqueue:
            cpu = CpuMeter(self.server.pid)
            started = time.perf_counter()
            for i in range(n):
                enqueue(i)
            elapsed = time.perf_counter() - started
            return {"enqueue_sync_jps": n / elapsed, **cpu.per_job_us(n, "enqueue_sync")}

    def enqueue_bulk(self, lib: Library, n: int, chunk: int) -> dict[str, float]:
        self.reset(lib)
        with lib.bulk_client() as enqueue_many:
            cpu = CpuMeter(self.server.pid)
            started = time.perf_counter()
            for seqs in chunks(n, chunk):
                enqueue_many(seqs)
            elapsed = time.perf_counter() - started
            return {"enqueue_bulk_jps": n / elapsed, **cpu.per_job_us(n, "enqueue_bulk")}

    async def enqueue_async(self, lib: Library, n: int) -> dict[str, float]:
        self.reset(lib)
        async with lib.async_client() as enqueue:
            cpu = CpuMeter(self.server.pid)
            started = time.perf_counter()
            for i in range(n):
                await enqueue(i)
            elapsed = time.perf_counter() - started
            return {"enqueue_async_jps": n / elapsed, **cpu.per_job_us(n, "enqueue_async")}

    async def drain(self, lib: Library, n: int, out_dir: str) -> dict[str, float]:
        queued = lib.queued()
        if queued != n:
            raise RuntimeError(f"{lib.name}: {queued} jobs queued before the drain, expected {n}")
        timeout_s = 60 + n / 50
        wall_start = time.time()
        started = time.perf_counter()
        with self.workers(lib, out_dir) as workers:
            # CPU is counted from the first job on: start-up (imports, connecting) is left out
            await wait_for(
                "the first job ran",
                lambda: jobsink.count_records(out_dir) > 0,
                workers,
                timeout_s,
                0.002,
            )
            cpu = CpuMeter(self.server.pid, workers.pids)
            await wait_for(
                "all jobs ran",
                lambda: jobsink.count_records(out_dir) >= n,
                workers,
                timeout_s,
                0.005,
            )
            ran_s = time.perf_counter() - started
            await wait_for("all jobs settled", lambda: lib.settled(n), workers, timeout_s, 0.02)
            done_s = time.perf_counter() - started
            cpu_used = cpu.per_job_us(n, "drain")
            noise = workers.warnings()
        records = jobsink.read_records(out_dir)
        duplicates = check_ran(lib.name, records, n, "drain")
        first_start = min(t for _, t in records) - wall_start
        last_start = max(t for _, t in records) - wall_start
        if noise:
            log(f"{lib.name} workers wrote (at WARNING):\n{noise}")
        return {
            "drain_ran_jps": n / ran_s,
            "drain_done_jps": n / done_s,
            "drain_steady_jps": n / max(last_start - first_start, 1e-9),
            "drain_startup_s": first_start,
            "drain_ran_s": ran_s,
            "drain_done_s": done_s,
            "drain_duplicate_runs": duplicates,
            **cpu_used,
        }

    async def idle(self, workers: Workers) -> dict[str, float]:
        """Freshly started workers with nothing queued: settle, then the idle window.

        Nothing but the workers sends Redis anything meanwhile: the benchmark's
        other connections and the library's client are idle or not yet open.
        """
        settled_s = await settle(workers, self.settle_s, self.settle_max_s)
        if self.idle_s <= 0:
            return {}
        server_cpu = process_cpu_s([self.server.pid])
        window = await idle_window(workers, self.idle_s, self.counters)
        server_cpu = process_cpu_s([self.server.pid]) - server_cpu
        # per command, only the rates of the commands the workers sent (the counts are
        # the server's since it started, every library's commands included)
        out = {
            key: value
            for key, value in window.items()
            if not key.startswith("idle_redis_calls_") or (key.endswith("_per_s") and value)
        }
        out["idle_settle_s"] = settled_s
        out["idle_redis_cpu_pct"] = 100 * server_cpu / out["idle_window_s"]  # the whole server
        return out

    async def latency(
        self, lib: Library, m: int, interval_s: float, out_dir: str
    ) -> dict[str, float]:
        """Idle workers (measured first: see ``idle``), then one job every ``interval_s``."""
        self.reset(lib)
        with self.workers(lib, out_dir) as workers:
            idle = await self.idle(workers)
            async with lib.latency_client() as enqueue:
                workers.check_alive()
                for k in range(5):
                    await enqueue(WARMUP_SEQ + k)
                    await asyncio.sleep(0.05)
                await wait_for(
                    "warm-up jobs ran",
                    lambda: jobsink.count_records(out_dir) >= 5,
                    workers,
                    60,
                    0.01,
                )
                await asyncio.sleep(self.after_warmup_s)
                cpu = CpuMeter(self.server.pid, workers.pids)
                sent = await send_paced(enqueue, m, interval_s)
                await wait_for(
                    "all latency jobs ran",
                    lambda: jobsink.count_records(out_dir) >= m + 5,
                    workers,
                    60,
                    0.01,
                )
                cpu_used = cpu.per_job_us(m, "latency")
            noise = workers.warnings()
        if noise:
            log(f"{lib.name} workers wrote (at WARNING):\n{noise}")
        records = jobsink.read_records(out_dir)
        duplicates = check_ran(lib.name, records, m, "latency")
        return {
            **latency_summary(records, sent),
            "latency_duplicate_runs": duplicates,
            **cpu_used,
            **idle,
        }

    async def mixed(self, lib: Library, n: int, out_dir: str) -> dict[str, float]:
        """n ``sleepy`` jobs (10 ms each) queued, then drained by freshly started workers."""
        self.reset(lib)
        await lib.prequeue(n, "sleepy")
        queued = lib.queued()
        if queued != n:
            raise RuntimeError(
                f"{lib.name}: {queued} jobs queued before the mixed run, expected {n}"
            )
        timeout_s = 60 + n / 20
        started = time.perf_counter()
        with self.workers(lib, out_dir) as workers:
            await wait_for(
                "all mixed jobs ran",
                lambda: jobsink.count_records(out_dir) >= n,
                workers,
                timeout_s,
                0.005,
            )
            ran_s = time.perf_counter() - started
            await wait_for(
                "all mixed jobs settled", lambda: lib.settled(n), workers, timeout_s, 0.02
            )
            noise = workers.warnings()
        records = jobsink.read_records(out_dir)
        duplicates = check_ran(lib.name, records, n, "mixed")
        if noise:
            log(f"{lib.name} workers wrote (at WARNING):\n{noise}")
        return {
            "mixed_jps": mixed_rate(records, n),
            "mixed_spawn_jps": n / ran_s,  # start-up included
            "mixed_duplicate_runs": duplicates,
        }


# -- reporting --------------------------------------------------------------------

ROWS: list[Row] = [
    ("enqueue_sync_jps", "enqueue, 1 call/job, sync API (jobs/s)", True),
    ("enqueue_async_jps", "enqueue, 1 call/job, async API (jobs/s)", True),
    ("enqueue_bulk_jps", "enqueue, bulk API, 1000/call (jobs/s)", True),
    ("drain_ran_jps", "drain, spawn -> all ran (jobs/s)", True),
    ("drain_done_jps", "drain, spawn -> all settled in Redis (jobs/s)", True),
    ("drain_steady_jps", "drain, first start -> last start (jobs/s)", True),
    ("mixed_jps", "mixed, 10 ms jobs, first start -> last end (jobs/s)", True),
    ("latency_p50_ms", "latency p50 (ms)", False),
    ("latency_p95_ms", "latency p95 (ms)", False),
    ("latency_p99_ms", "latency p99 (ms)", False),
    ("enqueue_sync_client_cpu_us", "CPU/job: sync enqueue, client (us)", False),
    ("enqueue_sync_redis_cpu_us", "CPU/job: sync enqueue, Redis (us)", False),
    ("enqueue_async_client_cpu_us", "CPU/job: async enqueue, client (us)", False),
    ("enqueue_async_redis_cpu_us", "CPU/job: async enqueue, Redis (us)", False),
    ("drain_worker_cpu_us", "CPU/job: drain, workers (us)", False),
    ("drain_redis_cpu_us", "CPU/job: drain, Redis (us)", False),
    ("latency_worker_cpu_us", "CPU/job: latency run, workers (us)", False),
    ("latency_redis_cpu_us", "CPU/job: latency run, Redis (us)", False),
    ("idle_cpu_pct", "idle: CPU per worker process (% of a core)", False),
    ("idle_wakeups_per_s", "idle: wake-ups/s per worker process", False),
    ("idle_redis_round_trips_per_s", "idle: Redis round trips/s per worker process", False),
    ("idle_redis_commands_per_s", "idle: Redis commands/s per worker process", False),
    ("idle_rss_mb", "idle: RSS per worker process (MB)", False),
]


def notes(
    libs: list[Library],
    jobs: dict[str, int],
    raw: dict[str, dict[str, list[float]]],
    args: argparse.Namespace,
) -> list[str]:
    """One line per library whose setup a reader must know to read its column."""
    out = [lib.note.replace(" C", f" {args.concurrency}") for lib in libs if lib.note]
    out += [
        f"{name}: {count:,} jobs per workload, not {args.jobs:,} (--cap)"
        for name, count in jobs.items()
        if count != args.jobs
    ]
    for name, metrics in raw.items():
        for what in ("drain", "latency", "mixed"):
            runs = metrics.get(f"{what}_duplicate_runs", [])
            if any(runs):
                out.append(
                    f"{name}: {int(sum(runs))} job(s) ran twice in {what} runs "
                    f"({', '.join(str(int(r)) for r in runs)} per repeat)"
                )
    return out


# -- main -------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=None, help="jobs per workload (20000)")
    parser.add_argument("--repeat", type=int, default=None, help="repeats (3)")
    parser.add_argument(
        "--smoke", action="store_true", help="300 jobs, 1 repeat, 50 latency jobs, 3 s idle"
    )
    parser.add_argument("--concurrency", type=int, default=50, help="jobs at once per worker")
    parser.add_argument("--latency-jobs", type=int, default=None, help="latency jobs (500)")
    parser.add_argument("--latency-interval-ms", type=float, default=10.0)
    parser.add_argument("--chunk", type=int, default=1000, help="jobs per bulk call")
    parser.add_argument("--idle-s", type=float, default=None, help="idle window, s (60; 0: none)")
    parser.add_argument(
        "--mixed-jobs", type=int, default=None, help="10 ms jobs in the mixed run (jobs/10)"
    )
    parser.add_argument("--libs", default=",".join(LIBRARIES))
    parser.add_argument(
        "--cap",
        action="append",
        default=[],
        metavar="LIB=N",
        help=f"at most N jobs per workload for LIB (default {DEFAULT_CAPS}; smoke {SMOKE_CAPS})",
    )
    parser.add_argument("--out", default=None, help="JSON path (bench/results/redis-<date>.json)")
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (300 if args.smoke else 20_000)
    args.repeat = args.repeat or (1 if args.smoke else 3)
    args.latency_jobs = args.latency_jobs or (50 if args.smoke else 500)
    if args.idle_s is None:
        args.idle_s = 3.0 if args.smoke else 60.0
    args.libs = [name.strip() for name in args.libs.split(",") if name.strip()]
    unknown = [name for name in args.libs if name not in LIBRARIES]
    if unknown or not args.libs:
        parser.error(f"--libs takes any of {', '.join(LIBRARIES)}; got {unknown}")
    caps = dict(SMOKE_CAPS if args.smoke else DEFAULT_CAPS)
    for spec in args.cap:
        name, _, count = spec.partition("=")
        if name not in LIBRARIES or not count.isdigit():
            parser.error(f"--cap takes LIB=N, got {spec!r}")
        caps[name] = int(count)
    args.caps = caps
    return args


async def run(args: argparse.Namespace, server: RedisServer, tmp: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OFFLOAD_", "BENCH_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for var in ("OFFLOAD_URL", "BENCH_REDIS_URL", "BENCH_SAQ_URL"):
        env[var] = os.environ[var] = server.url
    control = redis.Redis.from_url(server.url)
    libs = [LIBRARIES[name](server.url, control) for name in args.libs]
    bench = Bench(server, env, args.concurrency, args.smoke, args.idle_s)
    jobs = {lib.name: min(args.jobs, args.caps.get(lib.name, args.jobs)) for lib in libs}
    mixed_jobs = {name: args.mixed_jobs or max(1, n // 10) for name, n in jobs.items()}
    raw: dict[str, dict[str, list[float]]] = {lib.name: {} for lib in libs}

    def keep(lib: Library, values: dict[str, float]) -> None:
        for metric, value in values.items():
            raw[lib.name].setdefault(metric, []).append(value)

    def last(lib: Library, metric: str) -> float:
        return raw[lib.name][metric][-1]

    try:
        for rep in range(args.repeat):
            for lib in libs:
                n = jobs[lib.name]
                tag = f"repeat {rep + 1}/{args.repeat} {lib.name}"
                if lib.has_sync:
                    keep(lib, bench.enqueue_sync(lib, n))
                    log(f"{tag}: enqueue sync {last(lib, 'enqueue_sync_jps'):,.0f} jobs/s")
                if lib.has_async:
                    keep(lib, await bench.enqueue_async(lib, n))
                    log(f"{tag}: enqueue async {last(lib, 'enqueue_async_jps'):,.0f} jobs/s")
                if lib.has_bulk:
                    keep(lib, bench.enqueue_bulk(lib, n, args.chunk))
                    log(f"{tag}: enqueue bulk {last(lib, 'enqueue_bulk_jps'):,.0f} jobs/s")
                out_dir = tempfile.mkdtemp(prefix=f"drain-{lib.name}-{rep}-", dir=tmp)
                drain = await bench.drain(lib, n, out_dir)
                keep(lib, drain)
                log(
                    f"{tag}: drain {drain['drain_ran_jps']:,.0f} jobs/s ran, "
                    f"{drain['drain_done_jps']:,.0f} settled, "
                    f"startup {drain['drain_startup_s']:.2f}s"
                )
                out_dir = tempfile.mkdtemp(prefix=f"latency-{lib.name}-{rep}-", dir=tmp)
                latency = await bench.latency(
                    lib, args.latency_jobs, args.latency_interval_ms / 1000, out_dir
                )
                keep(lib, latency)
                if "idle_cpu_pct" in latency:
                    log(
                        f"{tag}: idle {latency['idle_cpu_pct']:.2f}% of a core, "
                        f"{latency['idle_wakeups_per_s']:.1f} wake-ups/s, "
                        f"{latency['idle_redis_round_trips_per_s']:.2f} round trips/s, "
                        f"{latency['idle_rss_mb']:.0f} MB per worker process"
                    )
                log(
                    f"{tag}: latency p50 {latency['latency_p50_ms']:.1f} ms, "
                    f"p99 {latency['latency_p99_ms']:.1f} ms"
                )
                out_dir = tempfile.mkdtemp(prefix=f"mixed-{lib.name}-{rep}-", dir=tmp)
                mixed = await bench.mixed(lib, mixed_jobs[lib.name], out_dir)
                keep(lib, mixed)
                log(f"{tag}: mixed {mixed['mixed_jps']:,.0f} jobs/s")
                control.flushdb()  # the next library starts from an empty database
    finally:
        for lib in libs:
            with contextlib.suppress(Exception):
                await lib.close()
        control.close()
        bench.counters.close()
    results = {name: {m: summarize(v) for m, v in metrics.items()} for name, metrics in raw.items()}
    return {
        "results": results,
        "jobs": jobs,
        "mixed_jobs": mixed_jobs,
        "notes": notes(libs, jobs, raw, args),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    began = time.time()
    source_before = git_state()
    server = RedisServer()
    tmp = tempfile.mkdtemp(prefix="offload-redis-bench-run-")
    try:
        log(f"starting redis-server on port {server.port}")
        server.start()
        redis_version = server.version()
        load_before = os.getloadavg()
        outcome = asyncio.run(run(args, server, tmp))
        load_after = os.getloadavg()
    except BaseException:
        log(f"failed; worker logs and job records are kept in {tmp}")
        raise
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        kill_all_workers()
        server.destroy()
    text = table(outcome["results"], args.libs, ROWS)
    config = {
        "jobs": args.jobs,
        "jobs_per_library": outcome["jobs"],
        "repeat": args.repeat,
        "smoke": args.smoke,
        "worker_processes": 2,
        "concurrency_per_worker": args.concurrency,
        "latency_jobs": args.latency_jobs,
        "latency_interval_ms": args.latency_interval_ms,
        "bulk_chunk": args.chunk,
        "mixed_jobs_per_library": outcome["mixed_jobs"],
        "mixed_job_sleep_s": SLEEPY_S,
        "idle_window_s": args.idle_s,
        "redis": redis_version,
        "redis_settings": '--save "" --appendonly no (no persistence)',  # RedisServer.CONFIG
        "notes": outcome["notes"],
    }
    document = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        },
        "versions": versions(
            ["redis", "hiredis", *(LIBRARIES[name].dist for name in args.libs), "kombu"]
        ),
        "offload_source": {"at_start": source_before, "at_end": git_state()},
        "config": config,
        "elapsed_s": round(time.time() - began, 1),
        "results": outcome["results"],
        "table": text,
    }
    if args.out:
        out = Path(args.out)
    elif args.smoke:
        out = Path(tempfile.gettempdir()) / "offload-redis-bench-smoke.json"
    else:
        out = BENCH / "results" / f"redis-{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(
        f"\n{args.jobs} jobs, {args.repeat} repeat(s), 2 worker processes, "
        f"{args.concurrency} jobs at once per process where the library runs several; "
        f"median (min-max); offload vs best peer > 1 = offload better\n"
    )
    print(text)
    for line in outcome["notes"]:
        print(f"  {line}")
    print(f"\nwritten to {out} in {time.time() - began:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
