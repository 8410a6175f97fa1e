"""PostgreSQL benchmark: offload against procrastinate and SAQ, on one throwaway cluster.

Run it with ``bench/run_pg.sh`` (which makes ``bench/.venv-peers`` with all three
libraries and redis-py in one interpreter, then runs this file); ``--smoke`` is
the quick CI variant (300 jobs, one repeat, 50 latency jobs, a 1 s idle
window, new workers given 0.5 s to settle, workers killed once measured).
Options are the Redis benchmark's (``redis_bench.py``: ``--jobs``,
``--repeat``, ``--kinds``, ``--def-concurrency``, ``--concurrency``,
``--latency-jobs``, ``--idle-s``, ``--mixed-jobs``,
``--libs offload,procrastinate,saq``). The workloads and checks are
``benchrun.py``'s and the output ``benchmain.py``'s, the same as
the Redis and SQLite benchmarks'; this file
holds what is PostgreSQL's.

Setup
    One PostgreSQL cluster from ``tests/servers.py`` (``PostgresServer``: a temp
    folder, a free port, ``fsync=off``, so commits cost CPU and protocol but no
    disk flush), and one fresh database per library; a throwaway
    ``redis-server`` (a temp folder, a free port, no persistence) is the side
    server the jobs talk to. Every library runs in its natural, documented
    configuration (see ``offload_app.py`` and ``peers/``): default serializer,
    no result storage where it is optional, workers started by each library's
    own CLI with logging at WARNING, 2 worker processes. Between workloads the
    library's job tables are truncated; libraries take turns within each
    repeat and kind so that drift on the machine hits all alike.

    Task kinds (``--kinds``): every job records that it ran and makes one real
    round trip, ``INCR`` on the side server (``jobsink.py``). ``def``: plain
    functions with a sync redis-py client, 8 at once per worker process
    (``--def-concurrency``), on threads: offload ``-c 8`` (it runs ``def``
    tasks on threads), procrastinate ``--concurrency=8`` (it runs them with
    asgiref's ``sync_to_async``, a thread each), SAQ ``"concurrency": 8`` (it
    runs them in its worker's thread pool). ``async``: ``async def`` tasks with
    ``redis.asyncio``, 50 at once per process for all three (``--concurrency``:
    offload ``-c 50``, procrastinate ``--concurrency=50``, SAQ
    ``"concurrency": 50``). The defaults differ (10, 1 and 10) and an async
    task costs little to run concurrently, so one generous value for all
    measures each library's fetch and acknowledge path rather than its
    default; procrastinate fetches one job per query whatever the value,
    offload claims up to its free slots in one query, SAQ dequeues up to its
    waiting slots in one query.

How "done" is counted (the same for all three)
    Each job's first statement is ``jobsink.record(seq)``: one unbuffered append
    of a fixed-width line (sequence number, ``time.time()``) to a file of its own
    worker process. The benchmark counts started jobs from those files' sizes,
    without asking the libraries and without loading the database. Once all N
    have run, it also waits until the side server counted N round trips and
    each library's own job table shows all N finished (offload
    ``state='succeeded'``, procrastinate ``status='succeeded'``, SAQ
    ``status='complete'``), and afterwards checks that every sequence number
    ran exactly once.

Workloads (each repeated ``R`` times per kind; medians and ranges are reported)
    enqueue, sync / async
        One client, one call per job, N sequential calls: offload ``task.enqueue``
        / ``task.enqueue_async``; procrastinate ``task.defer`` /
        ``task.defer_async``; SAQ ``await queue.enqueue`` (SAQ has no sync API).
    enqueue, bulk
        The bulk API in chunks of 1000: offload ``task.enqueue_many([task.s(i),
        ...])``; procrastinate ``task.batch_defer(*kwargs)``; SAQ has none (its
        ``map`` enqueues one by one and then waits for results).
    drain
        The N jobs left queued by the last enqueue workload; the clock starts
        right before the 2 worker processes are spawned (so it includes their
        start-up) and stops when all N have run ("all ran") and when all N are
        recorded finished by the library. Also reported: first job start to
        last job start (the steady rate, without start-up).
    latency
        2 idle worker processes (those of the idle workload, after its window;
        then 5 warm-up jobs), then one client enqueues one job every 10 ms
        (async API) for M jobs. For each job: its start time in the worker
        minus ``time.time()`` taken right before the client's enqueue call;
        p50, p95, p99 in ms.
    idle
        The latency workload's workers, measured before its client connects:
        2 worker processes started with nothing queued, given 12 s to settle
        (smoke 0.5 s) and then until they use under 5% of a core per process
        (start-up done; 10 s more at most), then a window of S seconds
        (``--idle-s``: 60; smoke 1). The 12 s: PostgreSQL publishes a
        backend's transaction counts at most once a second while it is busy
        and up to 10 s late once it is idle, so by then nothing from start-up
        is still unpublished. Over the window, per worker process (the total
        divided by 2): CPU as % of a core (the scheduler's exact run time of
        every thread, from ``/proc/<pid>/task/*/schedstat``), wake-ups/s
        (voluntary and involuntary context switches of every thread),
        PostgreSQL transactions/s (``xact_commit + xact_rollback`` of the
        library's database in ``pg_stat_database``, read from the
        ``postgres`` database so that reading adds none; each of the
        libraries' statements outside a transaction block is one); and RSS at
        the window's end. The JSON adds PSS, threads and the CPU of the
        database's backends. Smoke windows are too short for the transaction
        counts to mean much.
    mixed
        N/10 jobs (``--mixed-jobs``) of the ``sleepy`` task, each waiting
        10 ms before its round trip and its record (which marks its end),
        queued (bulk API where there is one), then drained by 2 fresh worker
        processes: jobs/s from the first job's start to the last one's end
        (start-up left out) and from spawn, every job checked to have run
        exactly once.

CPU per job
    Read from /proc, so time lost to other programs on the machine does not
    count: the client process (enqueue), the 2 worker process trees (drain and
    mixed, from the first job on, so start-up is left out; latency, whole
    window, including the libraries' idle polling and upkeep), and the
    PostgreSQL backends connected to the library's database (autovacuum,
    checkpoints, the other databases and the side Redis left out). Clock
    ticks are 10 ms, so smoke-run values are coarse.

Output
    One table per kind: a row per workload, a column per library, and "offload
    vs best peer" where > 1 always means offload is better (jobs/s: offload /
    best; ms, CPU, idle costs and memory: best / offload; "n/a" where
    offload's or a peer's figure is 0, as CPU read in 10 ms ticks can be in a
    smoke run, except in the idle rows, where 0 is measured: a peer at 0 makes
    0.00x). Full runs write ``bench/results/pg-<date>.json`` (``results``:
    kind, then library, then metric); smoke runs write to a temporary file
    unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import psycopg
from benchadapters import AsyncClient, Client, Library, OffloadLib, SaqLib
from benchlib import REPO
from benchmain import main
from benchrun import Engine


def sql_value(url: str, query: str, *params: Any) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return int(row[0])


def sql_run(url: str, query: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(query)


class PgLib(Library):
    """A library on its own database: its job table says what is queued and finished."""

    table = ""
    done = ""  # the WHERE clause of a finished job

    def queued(self) -> int:
        return sql_value(self.url, f"SELECT count(*) FROM {self.table}")  # all rows, after TRUNCATE

    def settled(self, n: int) -> bool:
        return sql_value(self.url, f"SELECT count(*) FROM {self.table} WHERE {self.done}") >= n


class ProcrastinateLib(PgLib):
    name = dist = "procrastinate"
    has_bulk = True
    table, done = "procrastinate_jobs", "status = 'succeeded'"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        from peers import procrastinate_app

        self.module = procrastinate_app
        self.app = procrastinate_app.app

    async def prepare(self) -> None:
        with self.app.open():
            self.app.schema_manager.apply_schema()

    @contextlib.contextmanager
    def sync_client(self, task: str) -> Iterator[Client]:
        with self.app.open():
            self.app.check_connection()
            chosen = getattr(self.module, task)
            yield lambda i: chosen.defer(i=i)

    @contextlib.contextmanager
    def bulk_client(self, task: str) -> Iterator[Callable[[list[int]], Any]]:
        with self.app.open():
            self.app.check_connection()
            chosen = getattr(self.module, task)
            yield lambda seqs: chosen.batch_defer(*({"i": i} for i in seqs))

    @contextlib.asynccontextmanager
    async def async_client(self, task: str) -> AsyncIterator[AsyncClient]:
        async with self.app.open_async():
            await self.app.check_connection_async()
            chosen = getattr(self.module, task)
            yield lambda i: chosen.defer_async(i=i)

    def worker_argv(self, concurrency: int, kind: str) -> list[str]:
        return [sys.executable, "-m", "procrastinate", "--app=peers.procrastinate_app.app",
                "--log-level=warning", "worker", f"--concurrency={concurrency}"]  # fmt: skip

    def noise(self, line: str) -> bool:
        return "Launching a worker on all queues" in line  # at WARNING, on every start


class PgSaqLib(SaqLib, PgLib):
    table, done = "saq_jobs", "status = 'complete'"

    async def prepare(self) -> None:
        async with self.queue():  # creates or migrates SAQ's tables
            pass


TRUNCATE = {
    "offload": "TRUNCATE offload.jobs, offload.locks",
    "procrastinate": "TRUNCATE procrastinate_jobs, procrastinate_workers CASCADE",
    "saq": "TRUNCATE saq_jobs, saq_stats",
}


class PgEngine(Engine):
    name = server_key = "pg"
    doc = __doc__
    store = "PostgreSQL"
    idle_rows = [
        ("idle_pg_transactions_per_s", "idle: PostgreSQL transactions/s per worker process", False)
    ]
    libraries: dict[str, type[Library]] = {
        "offload": OffloadLib,
        "procrastinate": ProcrastinateLib,
        "saq": PgSaqLib,
    }
    #: PostgreSQL publishes an idle backend's counts up to 10 s late: see the docstring.
    settle_s, settle_max_s = 12.0, 22.0
    dists = ("psycopg", "psycopg-pool")
    URL_ENV = {
        "offload": "OFFLOAD_URL",
        "procrastinate": "BENCH_PROCRASTINATE_URL",
        "saq": "BENCH_SAQ_URL",
    }

    def start(self, args: argparse.Namespace, tmp: str) -> dict[str, str]:
        sys.path.insert(0, str(REPO / "tests"))
        from servers import PostgresServer

        self.server = PostgresServer()
        self.server.start()
        self.admin_url = self.server.url("postgres")
        self.urls = {}
        for name in args.libs:
            self.server.psql(f'CREATE DATABASE "bench_{name}"')
            self.urls[name] = self.server.url(f"bench_{name}")
        return {self.URL_ENV[name]: url for name, url in self.urls.items()}

    def stop(self) -> None:
        if hasattr(self, "server"):
            self.server.destroy()

    def make(self, name: str) -> Library:
        return self.libraries[name](self.urls[name])

    async def reset(self, lib: Library) -> None:
        sql_run(lib.url, TRUNCATE[lib.name])  # the schema stays

    def server_pids(self, lib: Library) -> list[int]:
        """The backends serving the library's database, listed from the ``postgres`` one."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", [f"bench_{lib.name}"]
            ).fetchall()
        return [int(row[0]) for row in rows]

    def idle_counters(self, lib: Library) -> Callable[[], dict[str, float]]:
        query = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s"
        return lambda: {
            "pg_transactions": float(sql_value(self.admin_url, query, f"bench_{lib.name}"))
        }

    def config(self, libs: list[Library]) -> dict[str, Any]:
        return {
            "postgres": self.server.psql("SHOW server_version").strip(),
            "postgres_settings": "fsync=off, shared_buffers=64MB (tests/servers.py)",
        }


if __name__ == "__main__":
    sys.exit(main(PgEngine()))
