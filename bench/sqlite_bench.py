"""SQLite benchmark: offload's SQLite store against Huey's (``SqliteHuey``), each on its own file.

Run it with ``bench/run_sqlite.sh`` (which makes ``bench/.venv-peers-sqlite``
with huey, redis-py and this offload in one interpreter, then runs this file);
``--smoke`` is the quick CI variant, well under a minute (300 jobs, one repeat,
50 latency jobs, short idle windows, workers killed once measured). Options
are the Redis benchmark's (``redis_bench.py``: ``--jobs``, ``--repeat``,
``--kinds``, ``--def-concurrency``, ``--concurrency``, ``--latency-jobs``,
``--idle-s``, ``--mixed-jobs``, ``--libs offload,huey``), plus
``--huey-worker-type thread|process``. The workloads and checks are
``benchrun.py``'s and the output ``benchmain.py``'s, the same as
the PostgreSQL and Redis benchmarks'; this
file holds what is SQLite's.

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
    each workload the library's database files are deleted and created anew,
    so every workload starts from an empty file. A throwaway ``redis-server``
    (a temp folder, a free port, no persistence) is the side server the jobs
    talk to. Libraries take turns within each repeat and kind so that drift on
    the machine hits both alike.

    Workers: 2 processes run jobs for each library, each started by the
    library's own command with logging at WARNING: offload ``2 x offload
    worker offload_app:app -c C``; Huey ``2 x huey_consumer
    peers.huey_app.sqlite_huey --workers C --worker-type thread --quiet``,
    as in the Redis benchmark. Huey's thread workers are its default and its
    documented "safest choice"; a consumer is one process, so two consumers
    make the 2 processes. ``--huey-worker-type process`` measures the
    alternative instead: one ``huey_consumer --workers 2 --worker-type
    process``, whose 2 forked workers run one job at a time each (the parent
    keeps the scheduler). Huey's threads share one SQLite connection per
    process behind a lock and take one job per transaction, so its no-op drain
    was about a quarter faster with 8 threads per consumer than with 50 (5,000
    jobs, before the jobs' round trip) and no faster with 1.

    Task kinds (``--kinds``): every job records that it ran and makes one
    real round trip, ``INCR`` on the side server (``jobsink.py``). ``def``:
    plain functions with a sync redis-py client, C = 8 threads per worker
    process (``--def-concurrency``; offload runs ``def`` tasks on threads).
    ``async``: ``async def`` tasks with ``redis.asyncio`` and C = 50
    (``--concurrency``) for offload; Huey has no ``async def`` tasks and runs
    its ``def`` ones on 50 threads. Default serializers (offload msgspec JSON,
    Huey pickle) and no results stored (Huey ``results=False``; offload keeps
    its job rows, which is how it records a job finished).

    Idle workers: Huey's SQLite storage cannot block on the queue, so each
    worker thread polls it (``SELECT 1 ... LIMIT 1``) and backs off while it
    is empty: 0.1 s, then x1.15 after each empty poll, at most 10 s (its
    defaults), reset by a job. offload's idle worker ``stat``s the WAL file
    (every 2 ms after activity, backing off to every 50 ms) and reads the
    queue when it changed; its leader renews a lock and reaps expired leases
    once a second.

How "done" is counted (the same for both)
    Each job's first statement is ``jobsink.record(seq)`` (the mixed
    workload's ``sleepy`` job's last): one unbuffered append of a fixed-width
    line to a file of its own worker process. The benchmark counts started
    jobs from those files' sizes. Once all N have run, it also waits until
    the side server counted N round trips and the library's own database
    shows them settled: offload's jobs all ``succeeded``; Huey deletes a job's
    row when a worker takes it and keeps no in-flight record, so for Huey
    "settled" is "ran and made its round trip" (and a worker that dies loses
    the jobs it held). Afterwards every sequence number must have run exactly
    once, in every workload, or the benchmark stops.

Workloads (each repeated ``R`` times per kind; medians and ranges are reported)
    enqueue, sync / async / bulk
        One client, N sequential calls: offload ``task.enqueue`` (sync),
        ``task.enqueue_async`` (async) and ``task.enqueue_many`` in chunks of
        1000 (bulk, one transaction per call); Huey ``task(i)``. Huey has no
        asyncio API, and no bulk one (``task.map`` enqueues one by one).
    drain
        The N jobs left queued by the last enqueue workload; the clock starts
        right before the worker processes are spawned (so it includes their
        start-up) and stops when all N have run and when all N are settled.
        Also reported: first job start to last job start (the steady rate).
    mixed
        N/10 jobs (``--mixed-jobs``) of the ``sleepy`` task, which waits 10 ms
        (``asyncio.sleep`` or ``time.sleep``), makes its round trip and
        records its end; queued untimed, then drained by fresh workers as
        above: jobs/s from the first job's start to the last one's end and
        from spawn. It shows how many jobs a library keeps in flight at once.
    latency
        Idle workers (those of the idle workload, after its window; then 5
        warm-up jobs), then one client enqueues one job every 10 ms for M
        jobs (async API where the library has one, else sync). For each job:
        its start time in the worker minus ``time.time()`` taken right before
        the client's enqueue call; p50, p95, p99 in ms.
    idle
        The latency workload's workers before its client connects: started
        with nothing queued, given 2 s to settle (smoke 0.5 s) and then until
        quiet, then a window of S seconds (``--idle-s``: 60; smoke 1): CPU of
        their process trees (the scheduler's exact run time of every thread,
        from ``/proc/<pid>/task/*/schedstat``), context switches (each one a
        wake-up or a preemption) and resident memory (``VmRSS``) at the
        window's end, per worker process. The JSON adds the window's totals,
        PSS and thread counts. Huey's polls keep backing off through its first
        66 s of idleness (until they are 10 s apart), so the window shows a
        worker's first minute, not its floor; offload's cost is flat.

CPU per job
    Read from /proc, so time lost to other programs on the machine does not
    count: the client process (enqueue; offload's async API runs its SQLite
    calls on a thread of the client, which counts too) and the worker process
    trees (drain and mixed, from the first job on; latency, the whole window,
    including the libraries' idle polling and upkeep). There is no store
    server: SQLite's work is done inside these processes (the side Redis is
    not counted). Clock ticks are 10 ms, so smoke-run values are coarse.

Output
    One table per kind: a row per workload, a column per library, and
    "offload vs best peer" where > 1 always means offload is better (jobs/s:
    offload / Huey; ms, CPU, wake-ups and MB: Huey / offload). Full runs write
    ``bench/results/sqlite-<date>.json`` (``results``: kind, then library,
    then metric); smoke runs write to a temporary file unless ``--out`` is
    given.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
from typing import Any

from benchadapters import HueyLib, Library, OffloadLib
from benchmain import main
from benchrun import Engine


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


def filesystem_of(path: str) -> str:
    """The file system type that holds ``path`` (from /proc/mounts: longest mount point)."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            point, fs = line.split()[1:3]
            inside = path == point or path.startswith(point.rstrip("/") + "/")
            if inside and len(point) > len(best):
                best, kind = point, fs
    return kind


class SqliteHueyLib(HueyLib):
    instance = "sqlite_huey"

    async def prepare(self) -> None:
        self.huey.storage.initialize_schema()  # what SqliteHuey() does on a new file

    async def close(self) -> None:
        self.huey.storage.close()


class SqliteEngine(Engine):
    name = "sqlite"
    doc = __doc__
    store = "SQLite"
    libraries: dict[str, type[Library]] = {"offload": OffloadLib, "huey": SqliteHueyLib}
    FILES = {"offload": "offload/offload.db", "huey": "huey/huey.db"}  # under the temp folder

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--huey-worker-type",
            choices=("thread", "process"),
            default="thread",
            help="thread: 2 consumers x C threads (default); process: 1 consumer, 2 processes",
        )

    def start(self, args: argparse.Namespace, tmp: str) -> dict[str, str]:
        self.tmp = tmp
        self.paths = {name: os.path.join(tmp, file) for name, file in self.FILES.items()}
        for path in self.paths.values():
            os.makedirs(os.path.dirname(path), exist_ok=True)
        SqliteHueyLib.worker_type = args.huey_worker_type
        self.huey_worker_type = args.huey_worker_type
        return {
            "OFFLOAD_URL": f"sqlite:///{self.paths['offload']}",
            "BENCH_HUEY_SQLITE_PATH": self.paths["huey"],
        }

    def make(self, name: str) -> Library:
        return self.libraries[name](self.paths[name])

    async def reset(self, lib: Library) -> None:
        await lib.close()  # offload's next use opens a new store on the new file
        remove_database(self.paths[lib.name])
        await lib.prepare()

    def config(self, libs: list[Library]) -> dict[str, Any]:
        settings = {}
        for lib in libs:
            if isinstance(lib, OffloadLib):
                settings[lib.name] = pragmas(lib.app.backend.blocking._conn())
            elif isinstance(lib, SqliteHueyLib):
                with lib.huey.storage.db() as cursor:
                    settings[lib.name] = pragmas(cursor.connection)
        return {
            "huey_worker_type": self.huey_worker_type,
            "sqlite": sqlite3.sqlite_version,
            "database_folder_fs": filesystem_of(self.tmp),
            "connection_settings": settings,
        }

    def notes(self, libs: list[Library]) -> list[str]:
        if any(lib.name == "huey" for lib in libs):
            return [
                "huey: a job's row is deleted when a worker takes it: 'settled' = ran + INCR done"
            ]
        return []


if __name__ == "__main__":
    sys.exit(main(SqliteEngine()))
