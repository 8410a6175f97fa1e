"""The workloads the three engine benchmarks run alike, and the engine each describes.

``sqlite_bench.py``, ``pg_bench.py`` and ``redis_bench.py`` each describe an
``Engine`` (its store and server, its peers' adapters, how to empty the store,
the store's own CPU and request counters) and pass it to ``benchmain.main``.
``Bench`` runs every workload (enqueue, drain, mixed, idle, latency), checks
that each job ran and measures it the same way on every engine, so that the
three measure alike; the method is in each engine file's docstring. The
libraries' adapters are in ``benchadapters.py``; the run loop, options and
output in ``benchmain.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import jobsink
from benchadapters import WORKER_PROCESSES, Library, RedisServer
from benchlib import (
    WARMUP_SEQ,
    Row,
    Workers,
    chunks,
    idle_window,
    latency_summary,
    log,
    run_counts,
    send_paced,
    settle,
    wait_for,
)
from benchproc import process_cpu_s, tree_cpu_s, tree_runtime_s

# -- the engine and its workloads -------------------------------------------------


class Engine:
    """One benchmark's store: its servers, libraries, resets, CPU and counters."""

    name = ""  # results go to bench/results/<name>-<date>.json
    doc = ""  # the engine file's docstring
    store = ""  # the store as the table names it
    server_key = ""  # "redis" or "pg": CPU/job rows for the store's server ("" if none)
    idle_rows: list[Row] = []
    libraries: dict[str, type[Library]] = {}
    exactly_once = True  # a job that runs twice stops the run (else it is counted and noted)
    caps: dict[str, int] = {}  # jobs per workload for a library too slow for --jobs
    smoke_caps: dict[str, int] = {}
    settle_s, settle_max_s = 2.0, 15.0  # idle workers settle (full runs; smoke 0.5, 5)
    dists: tuple[str, ...] = ()  # more versions to report

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        pass

    def start(self, args: argparse.Namespace, tmp: str) -> dict[str, str]:
        """Start the store; the environment variables that point clients and workers at it."""
        raise NotImplementedError

    def stop(self) -> None:
        pass

    def make(self, name: str) -> Library:
        raise NotImplementedError

    async def reset(self, lib: Library) -> None:
        """Empty the library's part of the store (then ``lib.prepare`` where it needs to)."""
        raise NotImplementedError

    def server_pids(self, lib: Library) -> list[int]:
        """The store's processes serving this library, for their CPU."""
        return []

    def idle_counters(self, lib: Library) -> Callable[[], dict[str, float]]:
        """The store's running counts of the workers' requests (see ``idle_window``)."""
        return dict

    def config(self, libs: list[Library]) -> dict[str, Any]:
        return {}

    def notes(self, libs: list[Library]) -> list[str]:
        return []


class CpuMeter:
    """CPU used since creation by the client or the worker trees, and by the store's server."""

    def __init__(self, engine: Engine, lib: Library, workers: list[int] | None = None) -> None:
        self.server = lambda: engine.server_pids(lib)
        self.key = engine.server_key
        self.workers = workers or []
        self._client = time.process_time()
        self._workers = tree_cpu_s(self.workers)
        self._server = {pid: process_cpu_s([pid]) for pid in self.server()} if self.key else {}

    def per_job_us(self, n: int, prefix: str) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.workers:
            out[f"{prefix}_worker_cpu_us"] = 1e6 * (tree_cpu_s(self.workers) - self._workers) / n
        else:
            out[f"{prefix}_client_cpu_us"] = 1e6 * (time.process_time() - self._client) / n
        if self.key:  # a process that appeared since counts from zero
            used = sum(process_cpu_s([p]) - self._server.get(p, 0.0) for p in self.server())
            out[f"{prefix}_{self.key}_cpu_us"] = 1e6 * used / n
        return out


class Bench:
    """One run's fixed context: the engine, the options, the workers' environment, side Redis."""

    def __init__(
        self, engine: Engine, args: argparse.Namespace, env: dict[str, str], side: RedisServer
    ) -> None:
        self.engine = engine
        self.args = args
        self.env = env
        self.side = side.client()
        # A smoke run checks the harness: new workers settle 0.5 s (then until quiet),
        # warm-up jobs get 0.1 s to be over, and workers are killed once measured.
        self.settle_s = 0.5 if args.smoke else engine.settle_s
        self.settle_max_s = 5.0 if args.smoke else engine.settle_max_s
        self.after_warmup_s = 0.1 if args.smoke else 0.5
        self.grace_s = 0.0 if args.smoke else 20.0

    def concurrency(self, kind: str) -> int:
        return int(self.args.def_concurrency if kind == "def" else self.args.concurrency)

    def workers(self, lib: Library, kind: str, out_dir: str) -> Workers:
        c = self.concurrency(kind)
        argvs = lib.worker_argvs(c, kind)
        return Workers(lib.name, argvs, c, out_dir, self.env, lib.noise, self.grace_s)

    def incrs(self) -> int:
        """The side Redis's counter: how many jobs have made their round trip."""
        return int(self.side.get(jobsink.SIDE_KEY) or 0)

    def check(self, lib: Library, records: list[tuple[int, float]], n: int, what: str) -> int:
        """Every job ran; how many ran twice (fatal where the engine expects exactly once)."""
        runs, duplicates, missing = run_counts(records, n)
        if missing or (duplicates and self.engine.exactly_once):
            raise RuntimeError(
                f"{lib.name} {what}: {runs} runs of {runs - duplicates} distinct jobs "
                f"({duplicates} duplicate runs, {missing} never ran)"
            )
        if duplicates:
            log(f"{lib.name} {what}: {duplicates} job(s) ran a second time")
        return duplicates

    async def enqueue(self, lib: Library, api: str, task: str, n: int) -> dict[str, float]:
        """n sequential calls of one client (``bulk``: calls of ``--chunk`` jobs each)."""
        await self.engine.reset(lib)
        async with contextlib.AsyncExitStack() as stack:
            if api == "async":
                call: Any = await stack.enter_async_context(lib.async_client(task))
            elif api == "bulk":
                call = stack.enter_context(lib.bulk_client(task))
            else:
                call = stack.enter_context(lib.sync_client(task))
            cpu = CpuMeter(self.engine, lib)
            started = time.perf_counter()
            if api == "async":
                for i in range(n):
                    await call(i)
            elif api == "bulk":
                for seqs in chunks(n, self.args.chunk):
                    call(seqs)
            else:
                for i in range(n):
                    call(i)
            elapsed = time.perf_counter() - started
            return {f"enqueue_{api}_jps": n / elapsed, **cpu.per_job_us(n, f"enqueue_{api}")}

    async def drain(
        self, lib: Library, kind: str, n: int, out_dir: str, prefix: str = "drain"
    ) -> dict[str, float]:
        """Start the workers on n queued jobs; time until all ran and until all are settled.

        Settled also means the side Redis counted every job's round trip. A
        ``sleepy`` job (``prefix`` "mixed") records when it ends, ``SLEEPY_S``
        after its start, so its steady rate is n over first start to last end.
        """
        queued = lib.queued()
        if queued != n:
            raise RuntimeError(f"{lib.name}: {queued} jobs queued before the {prefix}, not {n}")
        job_s = jobsink.SLEEPY_S if prefix == "mixed" else 0.0
        timeout_s = 60 + n / 20
        self.side.delete(jobsink.SIDE_KEY)
        wall_start = time.time()
        started = time.perf_counter()
        with self.workers(lib, kind, out_dir) as workers:
            # CPU is counted from the first job on: start-up (imports, connecting) is left out
            await wait_for(
                "the first job ran", lambda: jobsink.count_records(out_dir) > 0, workers,
                timeout_s, 0.002,
            )  # fmt: skip
            cpu = CpuMeter(self.engine, lib, workers.pids)
            await wait_for(
                "all jobs ran", lambda: jobsink.count_records(out_dir) >= n, workers,
                timeout_s, 0.005,
            )  # fmt: skip
            ran_s = time.perf_counter() - started
            await wait_for(
                "all jobs settled", lambda: lib.settled(n) and self.incrs() >= n, workers,
                timeout_s, 0.02,
            )  # fmt: skip
            done_s = time.perf_counter() - started
            cpu_used = cpu.per_job_us(n, prefix)
            noise = workers.warnings()
        if noise:
            log(f"{lib.name} workers wrote (at WARNING):\n{noise}")
        records = jobsink.read_records(out_dir)
        duplicates = self.check(lib, records, n, prefix)
        first_start = min(t for _, t in records) - job_s - wall_start
        last_record = max(t for _, t in records) - wall_start
        return {
            f"{prefix}_ran_jps": n / ran_s,
            f"{prefix}_done_jps": n / done_s,
            f"{prefix}_steady_jps": n / max(last_record - first_start, 1e-9),
            f"{prefix}_startup_s": first_start,
            f"{prefix}_ran_s": ran_s,
            f"{prefix}_done_s": done_s,
            f"{prefix}_duplicate_runs": duplicates,
            **cpu_used,
        }

    async def mixed(self, lib: Library, kind: str, n: int, out_dir: str) -> dict[str, float]:
        """n ``sleepy`` jobs (10 ms each) queued untimed, then drained by fresh workers."""
        await self.engine.reset(lib)
        await lib.prequeue(n, lib.task("sleepy", kind))
        return await self.drain(lib, kind, n, out_dir, prefix="mixed")

    async def idle(self, lib: Library, workers: Workers) -> dict[str, float]:
        """Freshly started workers with nothing queued: settle, then the idle window.

        Nothing but the workers uses the library's store meanwhile: the
        benchmark's other connections and the library's client are idle or not
        yet open. Per-command counts (``_calls_``) keep the nonzero rates only.
        """
        settled_s = await settle(workers, self.settle_s, self.settle_max_s, WORKER_PROCESSES)
        if self.args.idle_s <= 0:
            return {}

        def server_s() -> float:
            pids = self.engine.server_pids(lib)
            exact = tree_runtime_s(pids)
            return process_cpu_s(pids) if exact is None else exact

        server = server_s()
        counters = self.engine.idle_counters(lib)
        window = await idle_window(workers, self.args.idle_s, counters, WORKER_PROCESSES)
        server = server_s() - server
        out = {
            key: value
            for key, value in window.items()
            if "_calls_" not in key or (key.endswith("_per_s") and value)
        }
        out["idle_settle_s"] = settled_s
        if self.engine.server_key:
            out[f"idle_{self.engine.server_key}_cpu_pct"] = 100 * server / out["idle_window_s"]
        return out

    async def latency(self, lib: Library, kind: str, m: int, out_dir: str) -> dict[str, float]:
        """Idle workers (measured first: see ``idle``), then one job every interval."""
        await self.engine.reset(lib)
        self.side.delete(jobsink.SIDE_KEY)
        warm = 5
        with self.workers(lib, kind, out_dir) as workers:
            idle = await self.idle(lib, workers)
            async with lib.latency_client(lib.task("noop", kind)) as enqueue:
                workers.check_alive()
                for k in range(warm):
                    await enqueue(WARMUP_SEQ + k)
                    await asyncio.sleep(0.05)
                await wait_for("warm-up jobs ran", lambda: self.incrs() >= warm, workers, 60, 0.01)
                await asyncio.sleep(self.after_warmup_s)
                cpu = CpuMeter(self.engine, lib, workers.pids)
                sent = await send_paced(enqueue, m, self.args.latency_interval_ms / 1000)
                await wait_for(
                    "all latency jobs ran", lambda: self.incrs() >= m + warm, workers, 60, 0.01
                )
                cpu_used = cpu.per_job_us(m, "latency")
            noise = workers.warnings()
        if noise:
            log(f"{lib.name} workers wrote (at WARNING):\n{noise}")
        records = jobsink.read_records(out_dir)
        duplicates = self.check(lib, records, m, "latency")
        return {
            **latency_summary(records, sent),
            "latency_duplicate_runs": duplicates,
            **cpu_used,
            **idle,
        }
