"""SQLite benchmark: offload's SQLite store against Huey's (``SqliteHuey``), each on its own file.

Run it with ``bench/run_sqlite.sh`` (which makes ``bench/.venv-peers-sqlite``
with huey and this offload in one interpreter, then runs this file); ``--smoke``
is the quick CI variant, well under a minute (300 jobs, one repeat, 50 latency
jobs, 3 s idle windows, workers killed once measured). Options: ``--jobs N``
(default 20000), ``--repeat R`` (3), ``--concurrency C`` per worker process
(50), ``--latency-jobs M`` (500), ``--idle-s S`` (60), ``--mixed-jobs K``
(N/10), ``--libs offload,huey``, ``--huey-worker-type thread|process``. The
method is the PostgreSQL and Redis benchmarks' (``pg_bench.py``,
``redis_bench.py``), with the shared parts in ``benchlib.py``; the idle and
mixed workloads report what theirs do, measured by this file's own helpers.

Setup
    One temp folder on the machine's disk (``tempfile``; here the root file
    system, not a tmpfs, so a commit's ``fsync`` is real) and, in it, one
    SQLite file per library: ``offload/offload.db`` and ``huey/huey.db``. Both
    run in their natural, documented configuration, with default settings:
    offload on ``sqlite:////<folder>/offload.db`` (WAL, ``synchronous=FULL``),
    Huey on ``SqliteHuey(filename=...)`` (WAL; its ``fsync=None`` leaves
    SQLite's compiled default, which is FULL here: the pragma each library's own
    connection reports is written to the results). So both flush the WAL to
    disk on every commit, and both enqueue calls return a durable job. Before
    each workload the library's database files are deleted and created anew
    (as the Redis benchmark flushes its database), so every workload starts
    from an empty file. Libraries take turns within each repeat so that drift
    on the machine hits both alike.

    Workers: 2 processes run jobs for each library, each started by the
    library's own command with logging at WARNING: offload ``2 x offload
    worker offload_app:app -c C``; Huey ``2 x huey_consumer
    peers.huey_sqlite_app.huey --workers C --worker-type thread --quiet``,
    as in the Redis benchmark. Huey's thread workers are its default and its
    documented "safest choice"; a consumer is one process, so two consumers
    make the 2 processes, each running C jobs at once like offload's C async
    slots. ``--huey-worker-type process`` measures the alternative instead:
    one ``huey_consumer --workers 2 --worker-type process``, whose 2 forked
    workers run one job at a time each (the parent keeps the scheduler).
    C = 50 for both, as in the other benchmarks, so that both can hold 100
    jobs in flight. Huey's threads share one SQLite connection per process
    behind a lock and take one job per transaction, so its no-op drain was
    about a quarter faster with 8 threads per consumer (about 1,300 jobs/s
    against 1,000, 5,000 jobs here) and no faster with 1; its 10 ms jobs and
    its latency were the same with 8 as with 50 (and 5 times slower with 1).
    The task is an ``async def`` no-op taking one int for offload and
    a ``def`` one for Huey (which runs functions on its worker threads).
    Default serializers (offload msgspec JSON, Huey pickle) and no results stored
    (Huey ``results=False``; offload keeps its job rows, which is how it
    records a job finished).

    Idle workers: Huey's SQLite storage cannot block on the queue, so each
    worker thread polls it (``SELECT 1 ... LIMIT 1``) and backs off while it
    is empty: 0.1 s, then x1.15 after each empty poll, at most 10 s (its
    defaults), reset by a job. offload's idle worker ``stat``s the WAL file
    (every 2 ms after activity, backing off to every 50 ms) and reads the
    queue when it changed; its leader renews a lock and reaps expired leases
    once a second.

How "done" is counted (the same for both)
    Each job's first statement is ``jobsink.record(seq)`` (the mixed
    workload's ``sleepy`` job's last): one unbuffered append of a
    fixed-width line to a file of its own worker process. The
    benchmark counts started jobs from those files' sizes. Once all N have
    run, it also waits until the library's own database shows them settled:
    offload's jobs all ``succeeded``; Huey deletes a job's row when a worker
    takes it and keeps no in-flight record, so for Huey "settled" equals
    "ran" (and a worker that dies loses the jobs it held). Afterwards every
    sequence number must have run exactly once, in every workload, or the
    benchmark stops.

Workloads (each repeated ``R`` times; medians and ranges are reported)
    enqueue, sync / async
        One client, one call per job, N sequential calls: offload
        ``task.enqueue`` (sync) and ``task.enqueue_async`` (async); Huey
        ``task(i)``. Huey has no asyncio API.
    enqueue, bulk
        In chunks of 1000: offload ``task.enqueue_many`` (one transaction per
        call). Huey has none: ``task.map`` enqueues one by one, one
        transaction each, so its cell is n/a.
    drain
        The N jobs left queued by the last enqueue workload; the clock starts
        right before the worker processes are spawned (so it includes their
        start-up) and stops when all N have run ("all ran") and when all N are
        settled in the database. Also reported: first job start to last job
        start (the steady rate, without start-up).
    mixed
        N/10 jobs (``--mixed-jobs``) of the ``sleepy`` task, which waits 10 ms
        (``await asyncio.sleep(0.01)`` for offload, whose tasks are
        coroutines; ``time.sleep(0.01)`` on Huey's threads) and then records,
        so that its record marks its end; queued untimed (bulk API where there
        is one), then drained by fresh workers as above: jobs/s from spawn to
        the last job's end, and from the first job's start to the last one's
        end (start-up left out). It shows how many jobs a library keeps in
        flight at once: 2 x 50 slots of 10 ms cap both at 10,000 jobs/s.
    latency
        Idle workers (started, given 2 s and 5 warm-up jobs), then one client
        enqueues one job every 10 ms for M jobs (async API where the library
        has one, else sync). For each job: its start time in the worker minus
        ``time.time()`` taken right before the client's enqueue call; p50,
        p95, p99 in ms.
    idle
        Fresh workers, given 2 s (smoke 1 s) and 5 jobs (so that everything is
        imported and connected), then 1 s later a window of S seconds
        (``--idle-s``: 60; smoke 3) with no job and no client: the CPU seconds
        their process trees used (the scheduler's exact run time of every
        thread, from ``/proc/<pid>/task/*/schedstat``; the JSON also has the
        10 ms clock-tick figure), their context switches (voluntary and
        involuntary, summed over every thread from
        ``/proc/<pid>/task/*/status``: each one is a wake-up or a preemption;
        a thread that ended within the window is left out) and their resident
        memory (``VmRSS``) at the window's end, each divided by the 2 worker
        processes. The table shows CPU as % of a core and wake-ups per
        second, as the other benchmarks do; the JSON adds the window's totals
        (``idle_cpu_s``, ``idle_wakeups``), PSS and thread counts.
        Huey's polls keep backing off through its first 66 s of idleness
        (until they are 10 s apart), so the window shows a worker's first
        minute after its last job, not its floor; offload's cost is flat.

CPU per job
    Read from /proc, so time lost to other programs on the machine does not
    count: the client process (enqueue; offload's async API runs its SQLite
    calls on a thread of the client, which counts too) and the worker process
    trees (drain and mixed, from the first job on, so start-up is left out;
    latency, the whole window, including the libraries' idle polling and
    upkeep). There is no server: SQLite's work is done inside these processes.
    Clock ticks are 10 ms, so smoke-run values are coarse.

Output
    One table: a row per workload, a column per library, and "offload vs best
    peer" where > 1 always means offload is better (jobs/s: offload / Huey;
    ms, CPU, wake-ups and MB: Huey / offload). Full runs write
    ``bench/results/sqlite-<date>.json``; smoke runs write to a temporary file
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
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import jobsink
from benchlib import (
    BENCH,
    WARMUP_SEQ,
    Row,
    Workers,
    check_once,
    chunks,
    descendants,
    git_state,
    kill_all_workers,
    latency_summary,
    log,
    send_paced,
    summarize,
    table,
    tree_cpu_s,
    versions,
    wait_for,
)

WORKER_PROCESSES = 2  # processes running jobs, for every library and configuration
SLEEPY_S = 0.01  # how long each job of the mixed workload sleeps (the apps' ``sleepy``)


def remove_database(path: str) -> None:
    """The SQLite file and its WAL and shared-memory companions."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


def pragmas(conn: sqlite3.Connection) -> dict[str, Any]:
    """What a library's own connection runs with (both are per-connection settings)."""
    names = {"synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}, "journal_mode": {}}
    out: dict[str, Any] = {}
    for name, labels in names.items():
        value = conn.execute(f"PRAGMA {name}").fetchone()[0]
        out[name] = labels.get(value, value)
    return out


def described(settings: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in settings.items())


# -- the libraries ----------------------------------------------------------------


class Library:
    """What the benchmark needs from each library: clients, worker commands, two counts."""

    name = ""
    dist = ""  # the distribution whose version is reported
    has_sync = True
    has_async = False
    has_bulk = False
    note = ""  # printed under the table

    def __init__(self, path: str) -> None:
        self.path = path  # the library's SQLite file

    async def reset(self) -> None:
        """Close the client's connections, delete the database and create it anew."""
        raise NotImplementedError

    def sync_client(
        self, task: str = "noop"
    ) -> contextlib.AbstractContextManager[Callable[[int], Any]]:
        raise NotImplementedError

    def bulk_client(
        self, task: str = "noop"
    ) -> contextlib.AbstractContextManager[Callable[[list[int]], Any]]:
        raise NotImplementedError

    def async_client(
        self,
    ) -> contextlib.AbstractAsyncContextManager[Callable[[int], Awaitable[Any]]]:
        raise NotImplementedError

    def prequeue(self, n: int, task: str) -> None:
        """Enqueue jobs 0..n-1 of ``task`` by the fastest API the library has (untimed)."""
        if self.has_bulk:
            with self.bulk_client(task) as enqueue_many:
                for seqs in chunks(n, 1000):
                    enqueue_many(seqs)
        else:
            with self.sync_client(task) as enqueue:
                for i in range(n):
                    enqueue(i)

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
        """Jobs waiting in the database (checked before a drain)."""
        raise NotImplementedError

    def settled(self, n: int) -> bool:
        """Nothing queued or in flight, and all n recorded finished where the library does."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The pragmas of the library's own client connection."""
        raise NotImplementedError

    def noise(self, line: str) -> bool:
        """A line the workers print on every start even at WARNING."""
        return False

    async def close(self) -> None:
        pass


class OffloadLib(Library):
    name = dist = "offload"
    has_async = has_bulk = True

    def __init__(self, path: str) -> None:
        super().__init__(path)
        import offload_app  # reads $OFFLOAD_URL, set by run() before this import

        self.app = offload_app.app
        self.tasks = {"noop": offload_app.noop, "sleepy": offload_app.sleepy}

    async def reset(self) -> None:
        await self.app.aclose()  # the next use opens a new store on the new file
        remove_database(self.path)
        self.app.backend.blocking.migrate()  # what offload's first use does on a new file

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

    def settings(self) -> dict[str, Any]:
        store: Any = self.app.backend.blocking
        return pragmas(store._conn())  # the store's connection for this thread

    @contextlib.contextmanager
    def sync_client(self, task: str = "noop") -> Iterator[Callable[[int], Any]]:
        self.app.backend.blocking.stats()  # connected and warm before the clock starts
        yield self.tasks[task].enqueue

    @contextlib.contextmanager
    def bulk_client(self, task: str = "noop") -> Iterator[Callable[[list[int]], Any]]:
        self.app.backend.blocking.stats()
        chosen = self.tasks[task]
        yield lambda seqs: chosen.enqueue_many([chosen.s(i) for i in seqs])

    @contextlib.asynccontextmanager
    async def async_client(self) -> AsyncIterator[Callable[[int], Awaitable[Any]]]:
        await self.app.backend.stats()  # the store's I/O thread is up and connected
        yield self.tasks["noop"].enqueue_async

    def worker_argvs(self, concurrency: int) -> list[list[str]]:
        argv = [sys.executable, "-m", "offload", "worker", "offload_app:app",
                "-c", str(concurrency), "--log-level", "WARNING"]  # fmt: skip
        return [argv] * WORKER_PROCESSES

    async def close(self) -> None:
        await self.app.aclose()


class HueyLib(Library):
    name = dist = "huey"
    worker_type = "thread"

    def __init__(self, path: str) -> None:
        super().__init__(path)
        from peers import huey_sqlite_app

        self.huey = huey_sqlite_app.huey
        self.tasks = {"noop": huey_sqlite_app.noop, "sleepy": huey_sqlite_app.sleepy}

    @property
    def note(self) -> str:  # type: ignore[override]
        if self.worker_type == "process":
            return "huey: 1 consumer, --workers 2 --worker-type process (1 job at a time each)"
        return "huey: 2 consumers, C thread workers each"

    async def reset(self) -> None:
        self.huey.storage.close()
        remove_database(self.path)
        self.huey.storage.initialize_schema()  # what SqliteHuey() does on a new file

    def queued(self) -> int:
        return int(self.huey.pending_count())

    def settled(self, n: int) -> bool:
        return self.queued() == 0  # a job's row is deleted when a worker takes it

    def settings(self) -> dict[str, Any]:
        with self.huey.storage.db() as cursor:
            return pragmas(cursor.connection)

    @contextlib.contextmanager
    def sync_client(self, task: str = "noop") -> Iterator[Callable[[int], Any]]:
        self.huey.pending_count()  # connected and warm before the clock starts
        yield self.tasks[task]

    def worker_argvs(self, concurrency: int) -> list[list[str]]:
        base = [sys.executable, "-m", "huey.bin.huey_consumer", "peers.huey_sqlite_app.huey"]
        if self.worker_type == "process":
            return [[*base, "--workers", str(WORKER_PROCESSES), "--worker-type", "process",
                     "--quiet"]]  # fmt: skip
        argv = [*base, "--workers", str(concurrency), "--worker-type", "thread", "--quiet"]
        return [argv] * WORKER_PROCESSES

    async def close(self) -> None:
        self.huey.storage.close()


LIBRARIES: dict[str, type[Library]] = {lib.name: lib for lib in (OffloadLib, HueyLib)}
FILES = {"offload": "offload/offload.db", "huey": "huey/huey.db"}  # under the temp folder


# -- measuring processes ----------------------------------------------------------


class CpuMeter:
    """CPU used by the client or by the worker process trees since creation."""

    def __init__(self, workers: list[int] | None = None) -> None:
        self.workers = workers or []
        self._client = time.process_time()
        self._workers = tree_cpu_s(self.workers)

    def per_job_us(self, n: int, prefix: str) -> dict[str, float]:
        if self.workers:
            return {f"{prefix}_worker_cpu_us": 1e6 * (tree_cpu_s(self.workers) - self._workers) / n}
        return {f"{prefix}_client_cpu_us": 1e6 * (time.process_time() - self._client) / n}


def thread_switches(pids: Iterable[int]) -> dict[int, int]:
    """Context switches (voluntary + involuntary) of every thread of these process trees.

    ``/proc/<pid>/status`` counts its main thread only; each thread has its own
    under ``/proc/<pid>/task/``.
    """
    out: dict[int, int] = {}
    for pid in descendants(pids):
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/status") as f:
                    out[int(tid)] = sum(int(line.split()[1]) for line in f if "ctxt_sw" in line)
    return out


def thread_runtime_s(pids: Iterable[int]) -> dict[int, float]:
    """CPU seconds each thread of these process trees has run, to the nanosecond.

    From ``/proc/<pid>/task/<tid>/schedstat`` (the scheduler's own account),
    where ``/proc/<pid>/stat`` counts 10 ms clock ticks: an idle worker that
    wakes for a fraction of a millisecond is charged a whole tick or nothing.
    Empty where the kernel keeps no schedstat.
    """
    out: dict[int, float] = {}
    for pid in descendants(pids):
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with (
                    contextlib.suppress(OSError, ValueError, IndexError),
                    open(f"/proc/{pid}/task/{tid}/schedstat") as f,
                ):
                    out[int(tid)] = int(f.read().split()[0]) / 1e9
    return out


def tree_memory_mb(pids: Iterable[int]) -> tuple[float, float]:
    """(RSS, PSS) of these processes and their descendants, in MiB.

    RSS counts a page shared by forked processes once per process; PSS splits
    it among them (it matters for Huey's ``--worker-type process`` only).
    """
    rss_kb = pss_kb = 0
    for pid in descendants(pids):
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{pid}/status") as f:
                rss_kb += sum(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            with open(f"/proc/{pid}/smaps_rollup") as f:
                pss_kb += sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    return rss_kb / 1024, pss_kb / 1024


def grown(before: dict[int, Any], after: dict[int, Any]) -> Any:
    """What the threads alive at the end added since the start (a new thread from zero)."""
    return sum(value - before.get(tid, 0) for tid, value in after.items())


def filesystem_of(path: str) -> str:
    """The file system type that holds ``path`` (from /proc/mounts: longest mount point)."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            point = fields[1]
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(
                best
            ):
                best, kind = point, fields[2]
    return kind


# -- the workloads ----------------------------------------------------------------


class Bench:
    """One run's fixed context: the workers' environment, the options, a scratch folder."""

    def __init__(self, env: dict[str, str], concurrency: int, smoke: bool) -> None:
        self.env = env
        self.concurrency = concurrency
        # A smoke run checks the harness: it gives idle workers 1 s instead of 2, and
        # kills them once measured instead of waiting for their graceful shutdown.
        self.idle_s = 1.0 if smoke else 2.0
        self.grace_s = 0.0 if smoke else 20.0

    def workers(self, lib: Library, out_dir: str) -> Workers:
        argvs = lib.worker_argvs(self.concurrency)
        return Workers(
            lib.name, argvs, self.concurrency, out_dir, self.env, lib.noise, self.grace_s
        )

    async def enqueue_sync(self, lib: Library, n: int) -> dict[str, float]:
        await lib.reset()
        with lib.sync_client() as enqueue:
            cpu = CpuMeter()
            started = time.perf_counter()
            for i in range(n):
                enqueue(i)
            elapsed = time.perf_counter() - started
            return {"enqueue_sync_jps": n / elapsed, **cpu.per_job_us(n, "enqueue_sync")}

    async def enqueue_bulk(self, lib: Library, n: int, chunk: int) -> dict[str, float]:
        await lib.reset()
        with lib.bulk_client() as enqueue_many:
            cpu = CpuMeter()
            started = time.perf_counter()
            for seqs in chunks(n, chunk):
                enqueue_many(seqs)
            elapsed = time.perf_counter() - started
            return {"enqueue_bulk_jps": n / elapsed, **cpu.per_job_us(n, "enqueue_bulk")}

    async def enqueue_async(self, lib: Library, n: int) -> dict[str, float]:
        await lib.reset()
        async with lib.async_client() as enqueue:
            cpu = CpuMeter()
            started = time.perf_counter()
            for i in range(n):
                await enqueue(i)
            elapsed = time.perf_counter() - started
            return {"enqueue_async_jps": n / elapsed, **cpu.per_job_us(n, "enqueue_async")}

    async def drain(
        self, lib: Library, n: int, out_dir: str, prefix: str = "drain", job_s: float = 0.0
    ) -> dict[str, float]:
        """Start the workers on n queued jobs; time until all ran and all are settled.

        A job records when it starts (``job_s`` = 0) or, for the mixed
        workload's ``sleepy`` jobs, when it ends, ``job_s`` after its start: the
        steady rate is then n over first start to last end.
        """
        queued = lib.queued()
        if queued != n:
            raise RuntimeError(
                f"{lib.name}: {queued} jobs queued before the {prefix}, expected {n}"
            )
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
            cpu = CpuMeter(workers.pids)
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
            cpu_used = cpu.per_job_us(n, prefix)
            noise = workers.warnings()
        records = jobsink.read_records(out_dir)
        check_once(lib.name, records, n, prefix)
        first_start = min(t for _, t in records) - job_s - wall_start
        last_record = max(t for _, t in records) - wall_start
        if noise:
            log(f"{lib.name} workers wrote (at WARNING):\n{noise}")
        return {
            f"{prefix}_ran_jps": n / ran_s,
            f"{prefix}_done_jps": n / done_s,
            f"{prefix}_steady_jps": n / max(last_record - first_start, 1e-9),
            f"{prefix}_startup_s": first_start,
            f"{prefix}_ran_s": ran_s,
            f"{prefix}_done_s": done_s,
            **cpu_used,
        }

    async def mixed(self, lib: Library, n: int, out_dir: str) -> dict[str, float]:
        """n jobs of 10 ms each, queued (untimed), then drained by fresh workers."""
        await lib.reset()
        lib.prequeue(n, "sleepy")
        return await self.drain(lib, n, out_dir, prefix="mixed", job_s=SLEEPY_S)

    async def latency(
        self, lib: Library, m: int, interval_s: float, out_dir: str
    ) -> dict[str, float]:
        await lib.reset()
        with self.workers(lib, out_dir) as workers:
            async with lib.latency_client() as enqueue:
                await asyncio.sleep(self.idle_s)  # workers up and idle
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
                await asyncio.sleep(0.5)
                cpu = CpuMeter(workers.pids)
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
        }

    async def idle(self, lib: Library, window_s: float, out_dir: str) -> dict[str, float]:
        """Workers with nothing to do for ``window_s``: CPU, wake-ups, memory per process."""
        await lib.reset()
        warm = 5
        with self.workers(lib, out_dir) as workers:
            with lib.sync_client() as enqueue:
                await asyncio.sleep(self.idle_s)  # workers up
                workers.check_alive()
                for k in range(warm):  # so that everything is imported and connected
                    enqueue(k)
                    await asyncio.sleep(0.05)
            await wait_for(
                "warm-up jobs ran",
                lambda: jobsink.count_records(out_dir) >= warm,
                workers,
                60,
                0.01,
            )
            await asyncio.sleep(1.0)
            ticks_before = tree_cpu_s(workers.pids)
            runtime_before = thread_runtime_s(workers.pids)
            switches_before = thread_switches(workers.pids)
            started = time.perf_counter()
            await asyncio.sleep(window_s)
            workers.check_alive()
            ticks = tree_cpu_s(workers.pids) - ticks_before
            runtime_after = thread_runtime_s(workers.pids)
            switches_after = thread_switches(workers.pids)
            elapsed = time.perf_counter() - started
            rss_mb, pss_mb = tree_memory_mb(workers.pids)
            noise = workers.warnings()
        if noise:
            log(f"{lib.name} workers wrote (at WARNING):\n{noise}")
        check_once(lib.name, jobsink.read_records(out_dir), warm, "idle")
        cpu = grown(runtime_before, runtime_after) if runtime_after else ticks
        switches = grown(switches_before, switches_after)
        per = WORKER_PROCESSES
        return {
            "idle_window_s": elapsed,
            "idle_cpu_s": cpu / per,
            "idle_cpu_s_ticks": ticks / per,  # the same from /proc/<pid>/stat, 10 ms ticks
            "idle_wakeups": switches / per,
            "idle_cpu_pct": 100 * cpu / per / elapsed,
            "idle_wakeups_per_s": switches / per / elapsed,
            "idle_rss_mb": rss_mb / per,
            "idle_pss_mb": pss_mb / per,
            "idle_threads": len(switches_after) / per,
        }


# -- reporting --------------------------------------------------------------------


ROWS: list[Row] = [
    ("enqueue_sync_jps", "enqueue, 1 call/job, sync API (jobs/s)", True),
    ("enqueue_async_jps", "enqueue, 1 call/job, async API (jobs/s)", True),
    ("enqueue_bulk_jps", "enqueue, bulk API, 1000/call (jobs/s)", True),
    ("drain_ran_jps", "drain, spawn -> all ran (jobs/s)", True),
    ("drain_done_jps", "drain, spawn -> all settled in SQLite (jobs/s)", True),
    ("drain_steady_jps", "drain, first start -> last start (jobs/s)", True),
    ("mixed_steady_jps", "mixed, 10 ms jobs, first start -> last end (jobs/s)", True),
    ("mixed_ran_jps", "mixed, 10 ms jobs, spawn -> last end (jobs/s)", True),
    ("latency_p50_ms", "latency p50 (ms)", False),
    ("latency_p95_ms", "latency p95 (ms)", False),
    ("latency_p99_ms", "latency p99 (ms)", False),
    ("enqueue_sync_client_cpu_us", "CPU/job: sync enqueue, client (us)", False),
    ("enqueue_async_client_cpu_us", "CPU/job: async enqueue, client (us)", False),
    ("enqueue_bulk_client_cpu_us", "CPU/job: bulk enqueue, client (us)", False),
    ("drain_worker_cpu_us", "CPU/job: drain, workers (us)", False),
    ("mixed_worker_cpu_us", "CPU/job: mixed, workers (us)", False),
    ("latency_worker_cpu_us", "CPU/job: latency run, workers (us)", False),
    ("idle_cpu_pct", "idle: CPU per worker process (% of a core)", False),
    ("idle_wakeups_per_s", "idle: wake-ups/s per worker process", False),
    ("idle_rss_mb", "idle: RSS per worker process (MB)", False),
]


def notes(libs: list[Library], args: argparse.Namespace) -> list[str]:
    """One line per library whose setup a reader must know to read its column."""
    out = [lib.note.replace(" C", f" {args.concurrency}") for lib in libs if lib.note]
    if any(lib.name == "huey" for lib in libs):
        out.append("huey: a job's row is deleted when a worker takes it, so 'settled' = 'ran'")
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
    parser.add_argument("--idle-s", type=float, default=None, help="idle window (60 s)")
    parser.add_argument("--mixed-jobs", type=int, default=None, help="10 ms jobs (jobs / 10)")
    parser.add_argument("--chunk", type=int, default=1000, help="jobs per bulk call")
    parser.add_argument("--libs", default=",".join(LIBRARIES))
    parser.add_argument(
        "--huey-worker-type",
        choices=("thread", "process"),
        default="thread",
        help="thread: 2 consumers x C threads (default); process: 1 consumer, 2 processes",
    )
    parser.add_argument("--out", default=None, help="JSON path (bench/results/sqlite-<date>.json)")
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (300 if args.smoke else 20_000)
    args.repeat = args.repeat or (1 if args.smoke else 3)
    args.latency_jobs = args.latency_jobs or (50 if args.smoke else 500)
    args.idle_s = args.idle_s or (3.0 if args.smoke else 60.0)
    args.mixed_jobs = args.mixed_jobs or max(1, args.jobs // 10)
    args.libs = [name.strip() for name in args.libs.split(",") if name.strip()]
    unknown = [name for name in args.libs if name not in LIBRARIES]
    if unknown or not args.libs:
        parser.error(f"--libs takes any of {', '.join(LIBRARIES)}; got {unknown}")
    return args


async def run(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OFFLOAD_", "BENCH_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    paths = {name: os.path.join(tmp, FILES[name]) for name in args.libs}
    for path in paths.values():
        os.makedirs(os.path.dirname(path), exist_ok=True)
    urls = {
        "OFFLOAD_URL": f"sqlite:///{paths.get('offload', os.path.join(tmp, FILES['offload']))}",
        "BENCH_HUEY_SQLITE_PATH": paths.get("huey", os.path.join(tmp, FILES["huey"])),
    }
    for var, value in urls.items():
        env[var] = os.environ[var] = value
    HueyLib.worker_type = args.huey_worker_type
    libs = [LIBRARIES[name](paths[name]) for name in args.libs]
    bench = Bench(env, args.concurrency, args.smoke)
    raw: dict[str, dict[str, list[float]]] = {lib.name: {} for lib in libs}
    settings: dict[str, dict[str, Any]] = {}

    def keep(lib: Library, values: dict[str, float]) -> None:
        for metric, value in values.items():
            raw[lib.name].setdefault(metric, []).append(value)

    def last(lib: Library, metric: str) -> float:
        return raw[lib.name][metric][-1]

    def scratch(what: str, lib: Library, rep: int) -> str:
        return tempfile.mkdtemp(prefix=f"{what}-{lib.name}-{rep}-", dir=tmp)

    try:
        for rep in range(args.repeat):
            for lib in libs:
                n = args.jobs
                tag = f"repeat {rep + 1}/{args.repeat} {lib.name}"
                if lib.has_sync:
                    keep(lib, await bench.enqueue_sync(lib, n))
                    settings.setdefault(lib.name, lib.settings())
                    log(f"{tag}: enqueue sync {last(lib, 'enqueue_sync_jps'):,.0f} jobs/s")
                if lib.has_async:
                    keep(lib, await bench.enqueue_async(lib, n))
                    log(f"{tag}: enqueue async {last(lib, 'enqueue_async_jps'):,.0f} jobs/s")
                if lib.has_bulk:
                    keep(lib, await bench.enqueue_bulk(lib, n, args.chunk))
                    log(f"{tag}: enqueue bulk {last(lib, 'enqueue_bulk_jps'):,.0f} jobs/s")
                drain = await bench.drain(lib, n, scratch("drain", lib, rep))
                keep(lib, drain)
                log(
                    f"{tag}: drain {drain['drain_ran_jps']:,.0f} jobs/s ran, "
                    f"{drain['drain_done_jps']:,.0f} settled, "
                    f"startup {drain['drain_startup_s']:.2f}s"
                )
                mixed = await bench.mixed(lib, args.mixed_jobs, scratch("mixed", lib, rep))
                keep(lib, mixed)
                log(
                    f"{tag}: mixed {mixed['mixed_ran_jps']:,.0f} jobs/s from spawn, "
                    f"{mixed['mixed_steady_jps']:,.0f} first start -> last end"
                )
                latency = await bench.latency(
                    lib,
                    args.latency_jobs,
                    args.latency_interval_ms / 1000,
                    scratch("latency", lib, rep),
                )
                keep(lib, latency)
                log(
                    f"{tag}: latency p50 {latency['latency_p50_ms']:.1f} ms, "
                    f"p99 {latency['latency_p99_ms']:.1f} ms"
                )
                idle = await bench.idle(lib, args.idle_s, scratch("idle", lib, rep))
                keep(lib, idle)
                log(
                    f"{tag}: idle {idle['idle_cpu_s']:.2f} CPU s "
                    f"({idle['idle_cpu_pct']:.2f}% of a core), "
                    f"{idle['idle_wakeups']:,.0f} context switches "
                    f"({idle['idle_wakeups_per_s']:.0f}/s), "
                    f"{idle['idle_rss_mb']:.0f} MB per worker process"
                )
    finally:
        for lib in libs:
            with contextlib.suppress(Exception):
                await lib.close()
    results = {name: {m: summarize(v) for m, v in metrics.items()} for name, metrics in raw.items()}
    return {"results": results, "settings": settings, "notes": notes(libs, args)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    began = time.time()
    source_before = git_state()
    tmp = tempfile.mkdtemp(prefix="offload-sqlite-bench-")
    try:
        log(f"databases in {tmp} ({filesystem_of(tmp)})")
        load_before = os.getloadavg()
        outcome = asyncio.run(run(args, tmp))
        load_after = os.getloadavg()
    except BaseException:
        log(f"failed; databases, worker logs and job records are kept in {tmp}")
        raise
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        kill_all_workers()
    text = table(outcome["results"], args.libs, ROWS)
    config = {
        "jobs": args.jobs,
        "repeat": args.repeat,
        "smoke": args.smoke,
        "worker_processes": WORKER_PROCESSES,
        "concurrency_per_worker": args.concurrency,
        "huey_worker_type": args.huey_worker_type,
        "latency_jobs": args.latency_jobs,
        "latency_interval_ms": args.latency_interval_ms,
        "idle_window_s": args.idle_s,
        "mixed_jobs": args.mixed_jobs,
        "mixed_job_sleep_s": 0.01,
        "bulk_chunk": args.chunk,
        "sqlite": sqlite3.sqlite_version,
        "database_folder_fs": filesystem_of(tmp),
        "connection_settings": outcome["settings"],
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
            ["offload", *(LIBRARIES[n].dist for n in args.libs if n != "offload")]
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
        out = Path(tempfile.gettempdir()) / "offload-sqlite-bench-smoke.json"
    else:
        out = BENCH / "results" / f"sqlite-{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(
        f"\n{args.jobs} jobs ({args.mixed_jobs} of 10 ms in the mixed workload), "
        f"{args.repeat} repeat(s), {WORKER_PROCESSES} worker processes, {args.concurrency} jobs "
        f"at once per process, SQLite {sqlite3.sqlite_version} "
        f"({'; '.join(f'{k} {described(v)}' for k, v in outcome['settings'].items())}); "
        f"median (min-max); offload vs best peer > 1 = offload better\n"
    )
    print(text)
    for line in outcome["notes"]:
        print(f"  {line}")
    print(f"\nwritten to {out} in {time.time() - began:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
