"""PostgreSQL benchmark: offload against procrastinate and SAQ, on one throwaway cluster.

Run it with ``bench/run_pg.sh`` (which makes ``bench/.venv-peers`` with all three
libraries in one interpreter, then runs this file); ``--smoke`` is the quick CI
variant (300 jobs, one repeat, a 3 s idle window, new workers given 0.5 s to
settle, workers killed once measured). Options: ``--jobs N`` (default 20000),
``--repeat R`` (3), ``--concurrency C`` per worker process (50),
``--latency-jobs M`` (500; smoke 100), ``--idle-s S`` (the idle window: 60;
smoke 3; 0 leaves it out), ``--mixed-jobs K`` (N/10),
``--libs offload,procrastinate,saq``.
What this and the Redis benchmark share (workers, CPU from /proc, the table)
is in ``benchlib.py``.

Setup
    One PostgreSQL cluster from ``tests/servers.py`` (``PostgresServer``: a temp
    folder, a free port, ``fsync=off``, so commits cost CPU and protocol but no
    disk flush), and one fresh database per library. Every library runs in its
    natural, documented configuration (see ``offload_app.py`` and ``peers/``):
    default serializer, no result storage where it is optional, workers started
    by each library's own CLI with logging at WARNING, 2 worker processes with
    ``C`` concurrent jobs each. The task is an ``async def`` no-op taking one int;
    the mixed workload's ``sleepy`` task awaits ``asyncio.sleep(0.01)``.
    Between workloads the library's job tables are truncated; libraries take
    turns within each repeat so that drift on the machine hits all alike.

    Concurrency: 50 per process for all three (offload ``-c 50``, procrastinate
    ``--concurrency=50``, SAQ ``"concurrency": 50``). The defaults differ
    (10, 1 and 10) and a no-op async task costs nothing to run concurrently, so
    one generous value for all measures each library's fetch and acknowledge
    path rather than its default; procrastinate fetches one job per query
    whatever the value, offload claims up to its free slots in one query, SAQ
    dequeues up to its waiting slots in one query.

How "done" is counted (the same for all three)
    Each job's first statement is ``jobsink.record(seq)``: one unbuffered append
    of a fixed-width line (sequence number, ``time.time()``) to a file of its own
    worker process. The benchmark counts started jobs from those files' sizes,
    without asking the libraries and without loading the database. Once all N
    have run, it also polls each library's own job table until all N are
    recorded finished (offload ``state='succeeded'``, procrastinate
    ``status='succeeded'``, SAQ ``status='complete'``), and afterwards checks
    that every sequence number ran exactly once.

Workloads (each repeated ``R`` times; medians and ranges are reported)
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
        recorded finished by the library ("all done"). Also reported: first job
        start to last job start (the steady rate, without start-up).
    latency
        2 idle worker processes (those of the idle workload, after its window;
        then a few warm-up jobs), then one client enqueues one job every 10 ms
        (async API) for M jobs. For each job: its start time in the worker
        minus ``time.time()`` taken right before the client's enqueue call;
        p50, p95, p99 in ms.
    idle
        The latency workload's workers, measured before its client connects:
        2 worker processes started with nothing queued, given 12 s to settle
        (smoke 0.5 s) and then until they use under 5% of a core per process
        (start-up done; 10 s more at most), then a window of S seconds
        (``--idle-s``: 60; smoke 3). The 12 s: PostgreSQL publishes a
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
        the window's end. The JSON adds PSS and the CPU of the database's
        backends. Smoke windows are too short for the transaction counts to
        mean much.
    mixed
        N/10 jobs (``--mixed-jobs``) of the ``sleepy`` task, each sleeping
        10 ms, queued (bulk API where there is one), then 2 freshly started
        worker processes drain them: jobs/s from the first job's start to the
        last one's end (a ``sleepy`` job records when it ends; worker start-up
        is left out), every job checked to have run exactly once. With C = 50
        slots per process, this shows each library's dispatch rather than the
        sleep.

CPU per job
    Read from /proc, so time lost to other programs on the machine does not
    count: the client process (enqueue), the 2 worker processes (drain, from
    the first job on, so start-up is left out; latency, whole window,
    including the libraries' idle polling and upkeep), and the PostgreSQL
    backends connected to the library's database (autovacuum, checkpoints and
    the other databases left out). Clock ticks are 10 ms, so smoke-run values
    are coarse.

Output
    One table: a row per workload, a column per library, and "offload vs best
    peer" where > 1 always means offload is better (jobs/s: offload / best;
    ms, CPU, idle costs and memory: best / offload; "n/a" where offload's or a
    peer's figure is 0, as CPU read in 10 ms ticks can be in a smoke run,
    except in the idle rows, where 0 is measured: a peer at 0 makes 0.00x). The full data goes to
    ``bench/results/pg-<date>.json`` (``-smoke`` added for smoke runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import jobsink
import psycopg
from benchlib import (
    BENCH,
    REPO,
    SLEEPY_S,
    WARMUP_SEQ,
    Row,
    Workers,
    check_once,
    chunks,
    git_state,
    idle_window,
    kill_all_workers,
    latency_summary,
    log,
    mixed_rate,
    process_cpu_s,
    send_paced,
    settle,
    summarize,
    table,
    tree_runtime_s,
    versions,
    wait_for,
)

#: Full runs let new workers settle this long at least before the idle window (see
#: ``measure_idle``: PostgreSQL publishes an idle backend's counts up to 10 s late).
IDLE_SETTLE_S = 12.0

# -- the three libraries ----------------------------------------------------------


class Library:
    """What the benchmark needs from each library: clients, a worker command, two queries."""

    name = ""
    url_env = ""
    done_sql = ""
    total_sql = ""
    truncate_sql = ""
    has_sync = True
    has_bulk = True

    def __init__(self, url: str) -> None:
        self.url = url

    async def setup(self) -> None:
        """Create the schema in the library's fresh database."""

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

    def worker_argv(self, concurrency: int) -> list[str]:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class OffloadLib(Library):
    name = "offload"
    url_env = "OFFLOAD_URL"
    done_sql = "SELECT count(*) FROM offload.jobs WHERE state = 'succeeded'"
    total_sql = "SELECT count(*) FROM offload.jobs"
    truncate_sql = "TRUNCATE offload.jobs, offload.locks"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        import offload_app

        self.app = offload_app.app
        self.tasks = {"noop": offload_app.noop, "sleepy": offload_app.sleepy}

    async def setup(self) -> None:
        self.app.backend.blocking.migrate()  # offload migrates on first use; this is that use

    @contextlib.contextmanager
    def sync_client(self, task: str = "noop") -> Iterator[Callable[[int], Any]]:
        self.app.backend.blocking.now()  # the pool is open and warm before the clock starts
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

    def worker_argv(self, concurrency: int) -> list[str]:
        return [sys.executable, "-m", "offload", "worker", "offload_app:app",
                "-c", str(concurrency), "--log-level", "WARNING"]  # fmt: skip

    async def close(self) -> None:
        await self.app.aclose()


class ProcrastinateLib(Library):
    name = "procrastinate"
    url_env = "BENCH_PROCRASTINATE_URL"
    done_sql = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
    total_sql = "SELECT count(*) FROM procrastinate_jobs"
    truncate_sql = "TRUNCATE procrastinate_jobs, procrastinate_workers CASCADE"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        from peers import procrastinate_app

        self.app = procrastinate_app.app
        self.tasks = {"noop": procrastinate_app.noop, "sleepy": procrastinate_app.sleepy}

    async def setup(self) -> None:
        with self.app.open():
            self.app.schema_manager.apply_schema()

    @contextlib.contextmanager
    def sync_client(self, task: str = "noop") -> Iterator[Callable[[int], Any]]:
        with self.app.open():
            self.app.check_connection()
            chosen = self.tasks[task]
            yield lambda i: chosen.defer(i=i)

    @contextlib.contextmanager
    def bulk_client(self, task: str = "noop") -> Iterator[Callable[[list[int]], Any]]:
        with self.app.open():
            self.app.check_connection()
            chosen = self.tasks[task]
            yield lambda seqs: chosen.batch_defer(*({"i": i} for i in seqs))

    @contextlib.asynccontextmanager
    async def async_client(
        self, task: str = "noop"
    ) -> AsyncIterator[Callable[[int], Awaitable[Any]]]:
        async with self.app.open_async():
            await self.app.check_connection_async()
            chosen = self.tasks[task]
            yield lambda i: chosen.defer_async(i=i)

    def worker_argv(self, concurrency: int) -> list[str]:
        return [sys.executable, "-m", "procrastinate", "--app=peers.procrastinate_app.app",
                "--log-level=warning", "worker", f"--concurrency={concurrency}"]  # fmt: skip


class SaqLib(Library):
    name = "saq"
    url_env = "BENCH_SAQ_URL"
    done_sql = "SELECT count(*) FROM saq_jobs WHERE status = 'complete'"
    total_sql = "SELECT count(*) FROM saq_jobs"
    truncate_sql = "TRUNCATE saq_jobs, saq_stats"
    has_sync = False
    has_bulk = False

    async def setup(self) -> None:
        async with self._queue():
            pass

    @contextlib.asynccontextmanager
    async def _queue(self) -> AsyncIterator[Any]:
        from saq import Queue

        queue = Queue.from_url(self.url)
        await queue.connect()  # creates or migrates SAQ's tables
        try:
            yield queue
        finally:
            await queue.disconnect()

    @contextlib.asynccontextmanager
    async def async_client(
        self, task: str = "noop"
    ) -> AsyncIterator[Callable[[int], Awaitable[Any]]]:
        async with self._queue() as queue:
            yield lambda i: queue.enqueue(task, i=i)

    def worker_argv(self, concurrency: int) -> list[str]:
        return [sys.executable, "-m", "saq", "peers.saq_app.settings"]


LIBRARIES: dict[str, type[Library]] = {
    "offload": OffloadLib,
    "procrastinate": ProcrastinateLib,
    "saq": SaqLib,
}


# -- database helpers -------------------------------------------------------------


def sql_value(url: str, query: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def sql_run(url: str, query: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(query)


# -- CPU accounting (from /proc, so contention from other programs does not count) --


def backend_pids(url: str) -> list[int]:
    """The server processes serving connections to this URL's database (but this one)."""
    query = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        return [int(row[0]) for row in conn.execute(query).fetchall()]


class CpuMeter:
    """CPU used by the client, the workers and PostgreSQL between creation and ``per_job_us``.

    PostgreSQL's share is that of the backends connected to the library's own
    database (read from /proc; a backend that appears later counts from zero),
    so autovacuum, checkpoints and the other libraries' databases are left out.
    """

    def __init__(self, url: str, workers: list[int] | None = None) -> None:
        self.url = url
        self.workers = workers or []
        self._client = time.process_time()
        self._workers = process_cpu_s(self.workers)
        self._backends = {pid: process_cpu_s([pid]) for pid in backend_pids(url)}

    def per_job_us(self, n: int, prefix: str) -> dict[str, float]:
        client = time.process_time() - self._client
        workers = process_cpu_s(self.workers) - self._workers
        pg = sum(
            process_cpu_s([pid]) - self._backends.get(pid, 0.0) for pid in backend_pids(self.url)
        )
        out = {f"{prefix}_pg_cpu_us": 1e6 * pg / n}
        if self.workers:
            out[f"{prefix}_worker_cpu_us"] = 1e6 * workers / n
        else:
            out[f"{prefix}_client_cpu_us"] = 1e6 * client / n
        return out


# -- idle workers -----------------------------------------------------------------


@dataclasses.dataclass
class IdleSetup:
    """How the idle workload runs: where to read the counters, how long to settle and measure."""

    admin_url: str  # the server's "postgres" database: reading there adds nothing to a library's
    window_s: float
    settle_s: float
    settle_max_s: float


def db_backend_pids(admin_url: str, dbname: str) -> list[int]:
    """The server processes serving connections to ``dbname``, listed from another database."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", [dbname]
        ).fetchall()
    return [int(row[0]) for row in rows]


def runtime_s(pids: list[int]) -> float:
    exact = tree_runtime_s(pids)
    return process_cpu_s(pids) if exact is None else exact


async def measure_idle(lib: Library, workers: Workers, idle: IdleSetup) -> dict[str, float]:
    """Freshly started workers with nothing queued: settle, then the idle window.

    Round trips are the transactions committed or rolled back in the library's
    database (``pg_stat_database``), read from the ``postgres`` database so
    that the reading itself adds none. Nothing else uses the library's database
    meanwhile (its client is idle or not yet open). PostgreSQL publishes a
    backend's counts at most once a second while it is busy and up to 10 s
    late once it goes idle, so full runs settle for at least 12 s: nothing
    from start-up is still unpublished when the window opens.
    """
    settled_s = await settle(workers, idle.settle_s, idle.settle_max_s)
    if idle.window_s <= 0:
        return {}
    dbname = str(psycopg.conninfo.conninfo_to_dict(lib.url)["dbname"])

    def counters() -> dict[str, float]:
        query = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s"
        with psycopg.connect(idle.admin_url, autocommit=True) as conn:
            row = conn.execute(query, [dbname]).fetchone()
        assert row is not None
        return {"pg_transactions": float(row[0])}

    pg_before = runtime_s(db_backend_pids(idle.admin_url, dbname))
    out = await idle_window(workers, idle.window_s, counters)
    pg_cpu = runtime_s(db_backend_pids(idle.admin_url, dbname)) - pg_before
    out["idle_settle_s"] = settled_s
    out["idle_pg_cpu_pct"] = 100 * pg_cpu / out["idle_window_s"]  # the database's backends
    return out


# -- the workloads ----------------------------------------------------------------


def known_noise(line: str) -> bool:
    return "Launching a worker on all queues" in line  # procrastinate, at WARNING, on start


def workers_of(
    lib: Library, concurrency: int, out_dir: str, env: dict[str, str], grace_s: float = 20.0
) -> Workers:
    """The library's 2 worker processes, each started by its own CLI.

    They are stopped with SIGTERM and up to ``grace_s`` to exit (then SIGKILL);
    smoke runs kill them at once, as the Redis benchmark's do.
    """
    argv = lib.worker_argv(concurrency)
    return Workers(
        lib.name, [argv, argv], concurrency, out_dir, env, noise=known_noise, grace_s=grace_s
    )


def reset(lib: Library) -> None:
    sql_run(lib.url, lib.truncate_sql)


def measure_enqueue_sync(lib: Library, n: int) -> dict[str, float]:
    reset(lib)
    with lib.sync_client() as enqueue:
        cpu = CpuMeter(lib.url)
        started = time.perf_counter()
        for i in range(n):
            enqueue(i)
        elapsed = time.perf_counter() - started
        return {"enqueue_sync_jps": n / elapsed, **cpu.per_job_us(n, "enqueue_sync")}


def measure_enqueue_bulk(lib: Library, n: int, chunk: int) -> dict[str, float]:
    reset(lib)
    with lib.bulk_client() as enqueue_many:
        cpu = CpuMeter(lib.url)
        started = time.perf_counter()
        for seqs in chunks(n, chunk):
            enqueue_many(seqs)
        elapsed = time.perf_counter() - started
        return {"enqueue_bulk_jps": n / elapsed, **cpu.per_job_us(n, "enqueue_bulk")}


async def measure_enqueue_async(lib: Library, n: int) -> dict[str, float]:
    reset(lib)
    async with lib.async_client() as enqueue:
        cpu = CpuMeter(lib.url)
        started = time.perf_counter()
        for i in range(n):
            await enqueue(i)
        elapsed = time.perf_counter() - started
        return {"enqueue_async_jps": n / elapsed, **cpu.per_job_us(n, "enqueue_async")}


async def measure_drain(
    lib: Library,
    n: int,
    concurrency: int,
    env: dict[str, str],
    out_dir: str,
    grace_s: float = 20.0,
) -> dict[str, float]:
    queued = sql_value(lib.url, lib.total_sql)
    if queued != n:
        raise RuntimeError(f"{lib.name}: {queued} jobs queued before the drain, expected {n}")
    timeout_s = 60 + n / 50
    wall_start = time.time()
    started = time.perf_counter()
    with workers_of(lib, concurrency, out_dir, env, grace_s) as workers:
        # CPU is counted from the first job on: start-up (imports, connecting) is left out
        await wait_for(
            "the first job ran",
            lambda: jobsink.count_records(out_dir) > 0,
            workers,
            timeout_s,
            0.002,
        )
        cpu = CpuMeter(lib.url, [p.pid for p in workers.procs])
        await wait_for(
            "all jobs ran", lambda: jobsink.count_records(out_dir) >= n, workers, timeout_s, 0.005
        )
        ran_s = time.perf_counter() - started
        await wait_for(
            "all jobs recorded done",
            lambda: sql_value(lib.url, lib.done_sql) >= n,
            workers,
            timeout_s,
            0.02,
        )
        done_s = time.perf_counter() - started
        cpu_used = cpu.per_job_us(n, "drain")
        noise = workers.warnings()
    records = jobsink.read_records(out_dir)
    check_once(lib.name, records, n, "drain")
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
        **cpu_used,
    }


async def measure_latency(
    lib: Library,
    m: int,
    interval_s: float,
    concurrency: int,
    env: dict[str, str],
    out_dir: str,
    idle: IdleSetup,
    grace_s: float = 20.0,
) -> dict[str, float]:
    """Idle workers (measured first: see ``measure_idle``), then one job every ``interval_s``."""
    reset(lib)
    with workers_of(lib, concurrency, out_dir, env, grace_s) as workers:
        idle_values = await measure_idle(lib, workers, idle)
        async with lib.async_client() as enqueue:
            workers.check_alive()
            for k in range(5):
                await enqueue(WARMUP_SEQ + k)
                await asyncio.sleep(0.05)
            await wait_for(
                "warm-up jobs ran", lambda: jobsink.count_records(out_dir) >= 5, workers, 60, 0.01
            )
            await asyncio.sleep(0.5)
            cpu = CpuMeter(lib.url, [p.pid for p in workers.procs])
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
    check_once(lib.name, records, m, "latency")
    return {
        **latency_summary(records, sent),
        **cpu_used,
        **idle_values,
    }


async def measure_mixed(
    lib: Library,
    n: int,
    concurrency: int,
    env: dict[str, str],
    out_dir: str,
    grace_s: float = 20.0,
) -> dict[str, float]:
    """n ``sleepy`` jobs (10 ms each) queued, then drained by 2 freshly started workers."""
    reset(lib)
    await lib.prequeue(n, "sleepy")
    queued = sql_value(lib.url, lib.total_sql)
    if queued != n:
        raise RuntimeError(f"{lib.name}: {queued} jobs queued before mixed, expected {n}")
    timeout_s = 60 + n / 20
    started = time.perf_counter()
    with workers_of(lib, concurrency, out_dir, env, grace_s) as workers:
        await wait_for(
            "all mixed jobs ran",
            lambda: jobsink.count_records(out_dir) >= n,
            workers,
            timeout_s,
            0.005,
        )
        ran_s = time.perf_counter() - started
        await wait_for(
            "all mixed jobs recorded done",
            lambda: sql_value(lib.url, lib.done_sql) >= n,
            workers,
            timeout_s,
            0.02,
        )
        noise = workers.warnings()
    records = jobsink.read_records(out_dir)
    check_once(lib.name, records, n, "mixed")
    if noise:
        log(f"{lib.name} workers wrote (at WARNING):\n{noise}")
    return {"mixed_jps": mixed_rate(records, n), "mixed_spawn_jps": n / ran_s}


# -- reporting --------------------------------------------------------------------

ROWS: list[Row] = [
    ("enqueue_sync_jps", "enqueue, 1 call/job, sync API (jobs/s)", True),
    ("enqueue_async_jps", "enqueue, 1 call/job, async API (jobs/s)", True),
    ("enqueue_bulk_jps", "enqueue, bulk API, 1000/call (jobs/s)", True),
    ("drain_ran_jps", "drain, spawn -> all ran (jobs/s)", True),
    ("drain_done_jps", "drain, spawn -> all recorded done (jobs/s)", True),
    ("drain_steady_jps", "drain, first start -> last start (jobs/s)", True),
    ("mixed_jps", "mixed, 10 ms jobs, first start -> last end (jobs/s)", True),
    ("latency_p50_ms", "latency p50 (ms)", False),
    ("latency_p95_ms", "latency p95 (ms)", False),
    ("latency_p99_ms", "latency p99 (ms)", False),
    ("enqueue_sync_client_cpu_us", "CPU/job: sync enqueue, client (us)", False),
    ("enqueue_async_client_cpu_us", "CPU/job: async enqueue, client (us)", False),
    ("enqueue_async_pg_cpu_us", "CPU/job: async enqueue, PostgreSQL (us)", False),
    ("drain_worker_cpu_us", "CPU/job: drain, 2 workers (us)", False),
    ("drain_pg_cpu_us", "CPU/job: drain, PostgreSQL (us)", False),
    ("latency_worker_cpu_us", "CPU/job: latency run, 2 workers (us)", False),
    ("latency_pg_cpu_us", "CPU/job: latency run, PostgreSQL (us)", False),
    ("idle_cpu_pct", "idle: CPU per worker process (% of a core)", False),
    ("idle_wakeups_per_s", "idle: wake-ups/s per worker process", False),
    ("idle_pg_transactions_per_s", "idle: PostgreSQL transactions/s per worker process", False),
    ("idle_rss_mb", "idle: RSS per worker process (MB)", False),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=None, help="jobs per workload (20000)")
    parser.add_argument("--repeat", type=int, default=None, help="repeats (3)")
    parser.add_argument(
        "--smoke", action="store_true", help="300 jobs, 1 repeat, 100 latency jobs, 3 s idle"
    )
    parser.add_argument("--concurrency", type=int, default=50, help="jobs at once per worker")
    parser.add_argument("--latency-jobs", type=int, default=None, help="latency jobs (500)")
    parser.add_argument("--latency-interval-ms", type=float, default=10.0)
    parser.add_argument("--chunk", type=int, default=1000, help="jobs per bulk call")
    parser.add_argument("--idle-s", type=float, default=None, help="idle window, s (60; 0: none)")
    parser.add_argument(
        "--mixed-jobs", type=int, default=None, help="10 ms jobs in the mixed run (jobs/10)"
    )
    parser.add_argument("--libs", default="offload,procrastinate,saq")
    parser.add_argument("--out", default=None, help="JSON path (bench/results/pg-<date>.json)")
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (300 if args.smoke else 20_000)
    args.repeat = args.repeat or (1 if args.smoke else 3)
    args.latency_jobs = args.latency_jobs or (100 if args.smoke else 500)
    if args.idle_s is None:
        args.idle_s = 3.0 if args.smoke else 60.0
    args.mixed_jobs = args.mixed_jobs or max(1, args.jobs // 10)
    args.libs = [name.strip() for name in args.libs.split(",") if name.strip()]
    unknown = [name for name in args.libs if name not in LIBRARIES]
    if unknown or not args.libs or "offload" not in args.libs:
        parser.error(f"--libs takes offload plus any of {', '.join(LIBRARIES)}; got {unknown}")
    return args


async def run(args: argparse.Namespace, server: Any, tmp: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OFFLOAD_", "BENCH_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    libs: list[Library] = []
    for name in args.libs:
        server.psql(f'CREATE DATABASE "bench_{name}"')
        url = server.url(f"bench_{name}")
        env[LIBRARIES[name].url_env] = os.environ[LIBRARIES[name].url_env] = url
    for name in args.libs:
        lib = LIBRARIES[name](os.environ[LIBRARIES[name].url_env])
        await lib.setup()
        libs.append(lib)
    raw: dict[str, dict[str, list[float]]] = {lib.name: {} for lib in libs}
    # A smoke run checks the harness: new workers settle for 0.5 s (then until quiet),
    # and workers are killed once measured instead of given 20 s to stop gracefully.
    grace_s = 0.0 if args.smoke else 20.0
    idle = IdleSetup(
        admin_url=server.url("postgres"),
        window_s=args.idle_s,
        settle_s=0.5 if args.smoke else IDLE_SETTLE_S,
        settle_max_s=5.0 if args.smoke else IDLE_SETTLE_S + 10,
    )

    def keep(lib: Library, values: dict[str, float]) -> None:
        for metric, value in values.items():
            raw[lib.name].setdefault(metric, []).append(value)

    try:
        for rep in range(args.repeat):
            for lib in libs:
                tag = f"repeat {rep + 1}/{args.repeat} {lib.name}"
                if lib.has_sync:
                    keep(lib, measure_enqueue_sync(lib, args.jobs))
                    log(f"{tag}: enqueue sync {raw[lib.name]['enqueue_sync_jps'][-1]:,.0f} jobs/s")
                keep(lib, await measure_enqueue_async(lib, args.jobs))
                log(f"{tag}: enqueue async {raw[lib.name]['enqueue_async_jps'][-1]:,.0f} jobs/s")
                if lib.has_bulk:
                    keep(lib, measure_enqueue_bulk(lib, args.jobs, args.chunk))
                    log(f"{tag}: enqueue bulk {raw[lib.name]['enqueue_bulk_jps'][-1]:,.0f} jobs/s")
                out_dir = tempfile.mkdtemp(prefix=f"drain-{lib.name}-{rep}-", dir=tmp)
                drain = await measure_drain(lib, args.jobs, args.concurrency, env, out_dir, grace_s)
                keep(lib, drain)
                log(
                    f"{tag}: drain {drain['drain_ran_jps']:,.0f} jobs/s ran, "
                    f"{drain['drain_done_jps']:,.0f} done, startup {drain['drain_startup_s']:.2f}s"
                )
                out_dir = tempfile.mkdtemp(prefix=f"latency-{lib.name}-{rep}-", dir=tmp)
                latency = await measure_latency(
                    lib,
                    args.latency_jobs,
                    args.latency_interval_ms / 1000,
                    args.concurrency,
                    env,
                    out_dir,
                    idle,
                    grace_s,
                )
                keep(lib, latency)
                if "idle_cpu_pct" in latency:
                    log(
                        f"{tag}: idle {latency['idle_cpu_pct']:.2f}% of a core, "
                        f"{latency['idle_wakeups_per_s']:.1f} wake-ups/s, "
                        f"{latency['idle_pg_transactions_per_s']:.2f} transactions/s, "
                        f"{latency['idle_rss_mb']:.0f} MB per worker process"
                    )
                log(
                    f"{tag}: latency p50 {latency['latency_p50_ms']:.1f} ms, "
                    f"p99 {latency['latency_p99_ms']:.1f} ms"
                )
                out_dir = tempfile.mkdtemp(prefix=f"mixed-{lib.name}-{rep}-", dir=tmp)
                mixed = await measure_mixed(
                    lib, args.mixed_jobs, args.concurrency, env, out_dir, grace_s
                )
                keep(lib, mixed)
                log(f"{tag}: mixed {mixed['mixed_jps']:,.0f} jobs/s")
    finally:
        for lib in libs:
            with contextlib.suppress(Exception):
                await lib.close()
    results = {name: {m: summarize(v) for m, v in metrics.items()} for name, metrics in raw.items()}
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO / "tests"))
    from servers import PostgresServer

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    began = time.time()
    source_before = git_state()
    server = PostgresServer()
    tmp = tempfile.mkdtemp(prefix="offload-pg-bench-")
    try:
        log(f"starting PostgreSQL on port {server.port}")
        server.start()
        pg_version = server.psql("SHOW server_version").strip()
        load_before = os.getloadavg()
        results = asyncio.run(run(args, server, tmp))
        load_after = os.getloadavg()
    except BaseException:
        log(f"failed; worker logs and job records are kept in {tmp}")
        raise
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        kill_all_workers()
        server.destroy()
    text = table(results, args.libs, ROWS)
    config = {
        "jobs": args.jobs,
        "repeat": args.repeat,
        "smoke": args.smoke,
        "worker_processes": 2,
        "concurrency_per_worker": args.concurrency,
        "latency_jobs": args.latency_jobs,
        "latency_interval_ms": args.latency_interval_ms,
        "bulk_chunk": args.chunk,
        "mixed_jobs": args.mixed_jobs,
        "mixed_job_sleep_s": SLEEPY_S,
        "idle_window_s": args.idle_s,
        "idle_settle_min_s": 0.5 if args.smoke else IDLE_SETTLE_S,
        "postgres": pg_version,
        "postgres_settings": "fsync=off, shared_buffers=64MB (tests/servers.py)",
    }
    document = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        },
        "versions": versions(("offload", "procrastinate", "saq", "psycopg", "psycopg-pool")),
        "offload_source": {"at_start": source_before, "at_end": git_state()},
        "config": config,
        "elapsed_s": round(time.time() - began, 1),
        "results": results,
        "table": text,
    }
    if args.out:
        out = Path(args.out)
    else:
        suffix = "-smoke" if args.smoke else ""
        out = BENCH / "results" / f"pg-{datetime.date.today().isoformat()}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(
        f"\n{args.jobs} jobs, {args.repeat} repeat(s), 2 worker processes x "
        f"{args.concurrency}; median (min-max); offload vs best peer > 1 = offload better\n"
    )
    print(text)
    print(f"\nwritten to {out} in {time.time() - began:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
