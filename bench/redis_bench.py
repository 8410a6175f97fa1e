"""Redis benchmark: offload against Celery, RQ, Dramatiq, Huey, arq, SAQ and TaskIQ.

Run it with ``bench/run_redis.sh`` (which makes ``bench/.venv-peers-redis`` with
every library in one interpreter, then runs this file); ``--smoke`` is the
quick variant, about a minute (300 jobs, RQ 100, one repeat, 50 latency jobs,
a 1 s idle window, new workers given 0.5 s to settle, and workers killed once
measured). Options: ``--jobs N`` (default 20000), ``--repeat R`` (3),
``--kinds def,async`` (both), ``--def-concurrency D`` (8) and ``--concurrency
C`` (50) per worker process, ``--latency-jobs M`` (500; smoke 50), ``--idle-s
S`` (the idle window: 60; smoke 1; 0 leaves it out), ``--mixed-jobs K``
(N/10), ``--libs offload,celery,...``, ``--cap LIB=N`` (jobs per workload for
a library too slow for N; see RQ). The workloads and checks are
``benchrun.py``'s and the output ``benchmain.py``'s, the same as
the PostgreSQL and SQLite benchmarks'
(``pg_bench.py``, ``sqlite_bench.py``); this file holds what is Redis's.

Setup
    Two throwaway ``redis-server``s (started here: temp folders, free ports on
    127.0.0.1, ``--save "" --appendonly no``, so no write ever waits for a disk
    and none forks for a snapshot; the machine's own Redis is never used): the
    store, and the side server the jobs talk to. The store's database 0 serves
    every library in turn and is flushed (``FLUSHDB``) before each workload,
    so each starts from an empty keyspace. Every library runs in its natural,
    documented configuration (see ``offload_app.py`` and ``peers/``): default
    serializer, no result storage where it is optional, workers started by the
    library's own command with logging at WARNING. Libraries take turns within
    each repeat and kind so that drift on the machine hits all alike.

    Workers: 2 processes run jobs for every library. offload, RQ, Huey, arq and
    SAQ are started twice (2 commands); Celery, Dramatiq and TaskIQ start one
    command that supervises its own 2 worker processes (Celery: a parent that
    fetches and acknowledges, 2 prefork children that run jobs). CPU is counted
    for the whole process tree, supervisors and forked children included.

    Task kinds (``--kinds``): every job records that it ran and makes one real
    round trip, ``INCR`` on the side server (``jobsink.py``). ``def``: plain
    functions with a sync redis-py client, 8 threads per worker process
    (``--def-concurrency``): offload ``-c 8`` (it runs ``def`` tasks on
    threads), Dramatiq ``--threads 8``, Huey ``--workers 8`` thread workers,
    SAQ ``concurrency`` 8 (it runs functions in its thread pool), TaskIQ
    ``--max-async-tasks 8 --max-threadpool-threads 8``; arq runs coroutines
    only, so its ``def`` task is a coroutine that hands the function to a pool
    of 8 threads with ``run_in_executor``, as arq's docs advise for blocking
    code. ``async``: ``async def`` tasks with ``redis.asyncio`` and C = 50 jobs
    at once per process (offload ``-c``, arq ``max_jobs``, SAQ ``concurrency``,
    TaskIQ ``--max-async-tasks``); Celery, RQ, Dramatiq and Huey have no
    ``async def`` tasks and run their ``def`` ones here too (Dramatiq and Huey
    on 50 threads). One generous value measures each library's fetch and
    acknowledge path rather than its default (Huey drained about as fast with 8
    threads per consumer as with 50, Dramatiq no slower with 50 than with its
    default 8). Celery's prefork pool (2 children) and RQ run one job per
    process by design, in both kinds.

    RQ: its default ``Worker`` forks a new process for every job (its
    documented model: a job cannot leak state into the next), about 14 ms of
    CPU per job here, and each job opens its own side connection. That is the
    configuration measured (not ``SimpleWorker``); it gets 5,000 jobs per
    workload in full runs so that its drain stays near a minute (100 in smoke
    runs), and the output says so.

    Idle workers: offload, Celery, RQ, Huey, SAQ and TaskIQ wait on a blocking
    Redis call; arq polls its queue every 0.5 s (``poll_delay``) and Dramatiq's
    consumer polls with a growing back-off when its queue is empty, both by
    default, which shows in their latency.

How "done" is counted (the same for all)
    Each job's first statement is ``jobsink.record(seq)``: one unbuffered
    append of a fixed-width line to a file of its own worker process. The
    benchmark counts started jobs from those files' sizes. Once all N have run,
    it also waits until the side server's counter shows N round trips and the
    library's keys in the store show them settled: nothing queued or in
    flight, and every job recorded finished where the library records that
    (offload: N in its ``succeeded`` index; SAQ: no incomplete job; Celery: no
    unacknowledged message; RQ: queue and started registry empty; Dramatiq: no
    message left in its ``.msgs`` hash; arq: queue zset empty; TaskIQ: no
    pending or unread stream entry; Huey takes a job off its list with
    ``BRPOP`` and keeps no in-flight record, so for Huey "settled" is "ran and
    made its round trip"). Afterwards every sequence number must have run: a
    job that never ran stops the benchmark; a job that ran twice (at-least-once
    delivery) is counted and reported under the tables.

Workloads (each repeated ``R`` times per kind; medians and ranges are reported)
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
        settled. Also reported: first job start to last job start (the steady
        rate, without start-up).
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
        seconds (``--idle-s``: 60; smoke 1) in which nothing else talks to
        the store. Over the window, per worker process (each tree's total divided
        by 2, so Celery's, Dramatiq's and TaskIQ's supervisors count in):
        CPU as % of a core (the scheduler's exact run time of every thread,
        from ``/proc/<pid>/task/*/schedstat``), wake-ups/s (voluntary and
        involuntary context switches of every thread), Redis round trips/s
        (``total_reads_processed``: one per request, a pipeline or a script
        call counting one) and commands/s (``total_commands_processed``: the
        commands inside scripts and ``MULTI`` too), less the benchmark's own
        ``INFO``; and RSS at the window's end. The JSON adds PSS (forked
        children's shared pages split among them), threads, redis-server's CPU
        and the rate of each command the workers sent.
    mixed
        N/10 jobs (``--mixed-jobs``; RQ's cap applies first) of the ``sleepy``
        task, each waiting 10 ms (``time.sleep`` or ``asyncio.sleep``) before
        its round trip and its record (which marks its end), queued (bulk API
        where there is one), then drained by fresh workers: jobs/s from the
        first job's start to the last one's end (start-up left out) and from
        spawn. This shows how many jobs run at once: 2 processes with 8 threads
        or C async slots each, against Celery's 2 prefork children and RQ's
        one forked job per worker at a time.

CPU per job
    Read from /proc, so time lost to other programs on the machine does not
    count: the client process (enqueue), the worker process trees (drain and
    mixed, from the first job on, so start-up is left out; latency, whole
    window, including the libraries' idle polling and upkeep), and the store's
    redis-server (all of it: only one library uses it at a time; the side
    server is not counted). Clock ticks are 10 ms, so smoke-run values are
    coarse.

Output
    One table per kind: a row per workload, a column per library, and "offload
    vs best peer" where > 1 always means offload is better (jobs/s: offload /
    best; ms, CPU, idle costs and memory: best / offload; "n/a" where
    offload's or a peer's figure is 0, as CPU read in 10 ms ticks can be in a
    smoke run, except in the idle rows, where 0 is measured: a peer at 0 makes
    0.00x). Full runs write ``bench/results/redis-<date>.json`` (``results``:
    kind, then library, then metric); smoke runs write to a temporary file
    unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import redis
from benchadapters import (
    AsyncClient,
    Client,
    HueyLib,
    Library,
    OffloadLib,
    RedisServer,
    SaqLib,
)
from benchmain import main
from benchrun import Engine

BIN = Path(sys.executable).parent
#: Celery's warning, on every start, that it runs as root (as everything on the bench machine).
CELERY_AS_ROOT = (
    "SecurityWarning: You're running the worker with superuser privileges",
    "absolutely not recommended!",
    "Please specify a different user using the --uid option.",
    "User information: uid=",
    "_warn_or_raise_security_error(",
)


class RedisLib(Library):
    """A library on the store's Redis; ``r`` is the benchmark's own connection, for counts."""

    r: redis.Redis

    def count(self, command: str, key: str) -> int:
        """``LLEN``, ``HLEN`` or ``ZCARD`` of one key, on the benchmark's own connection."""
        reply = {"LLEN": self.r.llen, "HLEN": self.r.hlen, "ZCARD": self.r.zcard}[command](key)
        return int(cast(int, reply))  # redis-py types a sync reply as ``T | Awaitable[T]``


class CeleryLib(RedisLib):
    name = dist = "celery"
    runs_async = False
    note = "celery: 1 worker, prefork pool of 2 processes (Celery's default on 2 cores)"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        from peers import celery_app

        self.app = celery_app.app
        self.tasks = {"noop_def": celery_app.noop_def, "sleepy_def": celery_app.sleepy_def}

    async def prepare(self) -> None:
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
    def sync_client(self, task: str) -> Iterator[Client]:
        yield self.tasks[task].delay

    def worker_argvs(self, concurrency: int, kind: str) -> list[list[str]]:
        # --quiet only leaves out the start-up banner, which is printed at any log level
        return [[sys.executable, "-m", "celery", "-A", "peers.celery_app", "--quiet", "worker",
                 "--loglevel=WARNING", "--concurrency=2"]]  # fmt: skip

    def noise(self, line: str) -> bool:
        return any(part in line for part in CELERY_AS_ROOT)

    async def close(self) -> None:
        self.app.close()


class RqLib(RedisLib):
    name = dist = "rq"
    has_bulk = True
    runs_async = False
    note = "rq: default Worker, which forks a new process for every job"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        from peers import rq_app
        from rq import Queue

        self.funcs = {"noop_def": rq_app.noop_def, "sleepy_def": rq_app.sleepy_def}
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
    def sync_client(self, task: str) -> Iterator[Client]:
        queue, func = self.queue, self.funcs[task]
        yield lambda i: queue.enqueue(func, i)

    @contextlib.contextmanager
    def bulk_client(self, task: str) -> Iterator[Callable[[list[int]], Any]]:
        from rq import Queue

        queue, func = self.queue, self.funcs[task]
        yield lambda seqs: queue.enqueue_many([Queue.prepare_data(func, (i,)) for i in seqs])

    def worker_argv(self, concurrency: int, kind: str) -> list[str]:
        return [str(BIN / "rq"), "worker", "--url", self.url, "--logging_level", "WARNING",
                "--results-ttl", "0"]  # fmt: skip


class DramatiqLib(RedisLib):
    name = dist = "dramatiq"
    runs_async = False
    note = "dramatiq: 1 command, --processes 2 --threads C"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        from peers import dramatiq_app

        self.broker = dramatiq_app.broker
        self.actors = {"noop_def": dramatiq_app.noop_def, "sleepy_def": dramatiq_app.sleepy_def}

    def queued(self) -> int:
        return self.count("LLEN", "dramatiq:default")

    def settled(self, n: int) -> bool:
        msgs = self.count("HLEN", "dramatiq:default.msgs")  # a message leaves it when acked
        return self.count("LLEN", "dramatiq:default") == 0 and msgs == 0

    @contextlib.contextmanager
    def sync_client(self, task: str) -> Iterator[Client]:
        yield self.actors[task].send

    def worker_argvs(self, concurrency: int, kind: str) -> list[list[str]]:
        return [[sys.executable, "-m", "dramatiq", "peers.dramatiq_app", "--processes", "2",
                 "--threads", str(concurrency), "--skip-logging"]]  # fmt: skip

    async def close(self) -> None:
        self.broker.close()


class RedisHueyLib(HueyLib):
    instance = "huey"


class ArqLib(RedisLib):
    name = dist = "arq"
    has_sync = False
    has_async = True
    note = "arq: coroutines only; its def tasks run on max_jobs threads (run_in_executor)"

    def queued(self) -> int:
        return self.count("ZCARD", "arq:queue")

    def settled(self, n: int) -> bool:
        return self.count("ZCARD", "arq:queue") == 0  # a job leaves the queue zset when it finishes

    @contextlib.asynccontextmanager
    async def async_client(self, task: str) -> AsyncIterator[AsyncClient]:
        from arq import create_pool
        from arq.connections import RedisSettings

        pool = await create_pool(RedisSettings.from_dsn(self.url))
        try:
            yield lambda i: pool.enqueue_job(task, i)
        finally:
            await pool.aclose()

    def worker_argv(self, concurrency: int, kind: str) -> list[str]:
        return [sys.executable, "-m", "peers.arq_app"]


class RedisSaqLib(SaqLib, RedisLib):
    def queued(self) -> int:
        return self.count("LLEN", "saq:default:queued")

    def settled(self, n: int) -> bool:
        return self.count("ZCARD", "saq:default:incomplete") == 0


class TaskiqLib(RedisLib):
    name = dist = "taskiq"
    has_sync = False
    has_async = True
    note = "taskiq: 1 command, --workers 2 --max-async-tasks C (def: --max-threadpool-threads too)"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        from peers import taskiq_app

        self.broker = taskiq_app.broker
        self.module = taskiq_app

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
    async def async_client(self, task: str) -> AsyncIterator[AsyncClient]:
        await self.broker.startup()  # creates the stream's consumer group (gone after FLUSHDB)
        try:
            yield getattr(self.module, task).kiq
        finally:
            await self.broker.shutdown()

    def worker_argvs(self, concurrency: int, kind: str) -> list[list[str]]:
        threads = ["--max-threadpool-threads", str(concurrency)] if kind == "def" else []
        return [[sys.executable, "-m", "taskiq", "worker", "peers.taskiq_app:broker",
                 "--workers", "2", "--max-async-tasks", str(concurrency), *threads,
                 "--log-level", "WARNING"]]  # fmt: skip


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


class RedisEngine(Engine):
    name = server_key = "redis"
    doc = __doc__
    store = "Redis"
    idle_rows = [
        ("idle_redis_round_trips_per_s", "idle: Redis round trips/s per worker process", False),
        ("idle_redis_commands_per_s", "idle: Redis commands/s per worker process", False),
    ]
    libraries: dict[str, type[Library]] = {
        "offload": OffloadLib,
        "celery": CeleryLib,
        "rq": RqLib,
        "dramatiq": DramatiqLib,
        "huey": RedisHueyLib,
        "arq": ArqLib,
        "saq": RedisSaqLib,
        "taskiq": TaskiqLib,
    }
    exactly_once = False  # several peers deliver at least once: a second run is noted
    caps = {"rq": 5_000}  # RQ's drain of 20,000 would take many minutes
    smoke_caps = {"rq": 100}  # smoke runs must stay near a minute: RQ's drain of 300 takes 6 s
    dists = ("hiredis", "kombu")

    def start(self, args: argparse.Namespace, tmp: str) -> dict[str, str]:
        self.server = RedisServer("store")
        self.server.start()
        self.r = self.server.client()
        self.counters = RedisCounters(self.server.url)
        url = self.server.url
        return {"OFFLOAD_URL": url, "BENCH_REDIS_URL": url, "BENCH_SAQ_URL": url}

    def stop(self) -> None:
        if hasattr(self, "server"):
            self.server.destroy()

    def make(self, name: str) -> Library:
        lib = self.libraries[name](self.server.url)
        lib.r = self.r  # type: ignore[attr-defined]
        return lib

    async def reset(self, lib: Library) -> None:
        self.r.flushdb()
        await lib.prepare()  # put back what the library expects to find once it is empty

    def server_pids(self, lib: Library) -> list[int]:
        return [self.server.pid]

    def idle_counters(self, lib: Library) -> Callable[[], dict[str, float]]:
        return self.counters

    def config(self, libs: list[Library]) -> dict[str, Any]:
        return {
            "redis": self.server.version,
            "redis_settings": '--save "" --appendonly no (no persistence)',  # RedisServer.CONFIG
        }


if __name__ == "__main__":
    sys.exit(main(RedisEngine()))
