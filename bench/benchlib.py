"""The benchmarks' measuring tools, so that all of them measure and report alike.

Worker processes (started, watched, stopped), the idle workload's settling
and window, the run counts over ``jobsink`` records, percentiles, and the
table of medians, ranges and "offload vs best peer" ratios. CPU, wake-ups and
memory from /proc are in ``benchproc.py``; what the engine benchmarks run
alike is in ``benchadapters.py`` (the libraries), ``benchrun.py`` (the
workloads) and ``benchmain.py`` (the run loop, options, output).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from benchproc import tree_cpu_s, tree_memory_mb, tree_runtime_s, tree_switches, tree_threads

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WARMUP_SEQ = 9_000_000_000  # warm-up jobs' sequence numbers start here; never counted
LIVE_WORKERS: set[subprocess.Popen[bytes]] = set()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def chunks(n: int, size: int) -> Iterator[list[int]]:
    for start in range(0, n, size):
        yield list(range(start, min(n, start + size)))


# -- worker processes -------------------------------------------------------------


class Workers:
    """One library's worker commands, always stopped (TERM, then KILL the group) on exit.

    Each command is one process started by the library's own CLI; some of them
    (Celery, Dramatiq, TaskIQ) run their own pool of worker processes below it.
    """

    def __init__(
        self,
        name: str,
        argvs: list[list[str]],
        concurrency: int,
        out_dir: str,
        env: dict[str, str],
        noise: Callable[[str], bool] = lambda line: False,
        grace_s: float = 20.0,
    ) -> None:
        self.name = name
        self.grace_s = grace_s
        self.out_dir = out_dir
        self.env = {**env, "BENCH_OUT_DIR": out_dir, "BENCH_CONCURRENCY": str(concurrency)}
        self.argvs = argvs
        self.noise = noise
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[str] = []

    def __enter__(self) -> Workers:
        for n, argv in enumerate(self.argvs):
            log_path = os.path.join(self.out_dir, f"worker-{n}.log")
            self.logs.append(log_path)
            with open(log_path, "wb") as log_file:
                proc = subprocess.Popen(
                    argv,
                    cwd=BENCH,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.procs.append(proc)
            LIVE_WORKERS.add(proc)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_processes(self.procs, self.grace_s)

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def check_alive(self) -> None:
        for proc, log_path in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"a {self.name} worker exited with {proc.returncode}:\n{tail(log_path)}"
                )

    def warnings(self) -> str:
        """What the workers logged, less lines known to be printed on every start."""
        lines = []
        for path in self.logs:
            with open(path, errors="replace") as handle:
                lines += [line for line in handle if line.strip() and not self.noise(line)]
        return "".join(lines[-40:])


def tail(path: str, lines: int = 40) -> str:
    with open(path, errors="replace") as handle:
        return "".join(handle.readlines()[-lines:])


def stop_processes(procs: list[subprocess.Popen[bytes]], grace_s: float = 20.0) -> None:
    """SIGTERM, up to ``grace_s`` to exit, then SIGKILL to each process group (at once if 0)."""
    if grace_s > 0:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            if grace_s > 0:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log(f"worker {proc.pid} ignored SIGTERM for {grace_s:.0f}s; killing it")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # also any children it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        LIVE_WORKERS.discard(proc)


def kill_all_workers() -> None:
    for proc in list(LIVE_WORKERS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        LIVE_WORKERS.discard(proc)


async def wait_for(
    what: str, condition: Callable[[], bool], workers: Workers, timeout_s: float, poll_s: float
) -> None:
    """Poll ``condition`` every ``poll_s``, or less often if checking it is itself costly.

    Counting records means one ``stat`` per worker process file; a library that
    forks a process per job (RQ) leaves thousands of files, so the interval
    grows to 5 times the check's own duration and the watching never takes
    more than a sixth of a core from the workers being measured.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        checked = time.perf_counter()
        if condition():
            return
        took = time.perf_counter() - checked
        workers.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{workers.name}: {what} not reached in {timeout_s:.0f}s")
        await asyncio.sleep(max(poll_s, 5 * took))


# -- idle workers -----------------------------------------------------------------


async def settle(workers: Workers, min_s: float, max_s: float, processes: int = 2) -> float:
    """Let freshly started workers finish starting: at least ``min_s``, then until quiet.

    Quiet means the worker process trees used under 5% of a core per worker
    process over the last quarter second (start-up, imports and connecting,
    takes far more); after ``max_s`` in all the workers count as settled
    anyway (a library that is never that quiet when idle). Returns the seconds
    waited.
    """
    step_s = 0.25

    def cpu_s() -> float:
        exact = tree_runtime_s(workers.pids)
        return tree_cpu_s(workers.pids) if exact is None else exact

    started = time.perf_counter()
    await asyncio.sleep(min_s)
    workers.check_alive()
    cpu = cpu_s()
    while time.perf_counter() - started < max_s:
        await asyncio.sleep(step_s)
        workers.check_alive()
        now = cpu_s()
        if now - cpu <= 0.05 * step_s * processes:
            break
        cpu = now
    return time.perf_counter() - started


async def idle_window(
    workers: Workers,
    window_s: float,
    counters: Callable[[], dict[str, float]],
    processes: int = 2,
) -> dict[str, float]:
    """What idle workers cost over ``window_s``: CPU, wake-ups, the store's counters, memory.

    CPU is the scheduler's exact run time of the trees' threads
    (``tree_runtime_s``; clock ticks where the kernel lacks it), wake-ups
    their context switches (``tree_switches``).

    ``counters`` reads the store's cumulative counts of the workers' requests
    (Redis: commands and socket reads; PostgreSQL: transactions), excluding the
    reading itself. Rates are per worker process (the tree's total divided by
    ``processes``: supervisors such as Celery's parent count towards their 2
    job-running children) and per second; RSS and PSS are per worker process
    at the window's end, as are threads. The raw totals are returned as well.
    """
    workers.check_alive()
    before = counters()
    ticks_before = tree_cpu_s(workers.pids)
    runtime_before = tree_runtime_s(workers.pids)
    switches_before = tree_switches(workers.pids)
    started = time.perf_counter()
    await asyncio.sleep(window_s)
    ticks = tree_cpu_s(workers.pids) - ticks_before
    runtime_after = tree_runtime_s(workers.pids)
    switches = tree_switches(workers.pids) - switches_before
    elapsed = time.perf_counter() - started
    after = counters()
    if runtime_before is None or runtime_after is None:
        cpu = ticks
    else:
        cpu = runtime_after - runtime_before
    workers.check_alive()
    rss_mb, pss_mb = tree_memory_mb(workers.pids)
    per = elapsed * processes
    out = {
        "idle_window_s": elapsed,
        "idle_cpu_s": cpu,
        "idle_cpu_s_ticks": ticks,  # the same from /proc/<pid>/stat, in 10 ms ticks
        "idle_wakeups": float(switches),
        "idle_cpu_pct": 100 * cpu / per,
        "idle_wakeups_per_s": switches / per,
        "idle_rss_mb": rss_mb / processes,
        "idle_pss_mb": pss_mb / processes,
        "idle_threads": tree_threads(workers.pids) / processes,
    }
    for key, value in after.items():
        delta = value - before.get(key, 0.0)
        out[f"idle_{key}"] = delta
        out[f"idle_{key}_per_s"] = delta / per
    return out


# -- checks and statistics --------------------------------------------------------


def run_counts(records: list[tuple[int, float]], n: int) -> tuple[int, int, int]:
    """(runs, extra runs of a job that had already run, jobs of 0..n-1 that never ran)."""
    seqs = [s for s, _ in records if s < WARMUP_SEQ]
    distinct = set(seqs)
    return len(seqs), len(seqs) - len(distinct), n - len(distinct & set(range(n)))


def percentile(sorted_values: list[float], p: float) -> float:
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def send_paced(
    enqueue: Callable[[int], Awaitable[Any]], count: int, interval_s: float
) -> dict[int, float]:
    """Enqueue jobs 0..count-1 one every ``interval_s`` on a fixed schedule (a late send
    does not push the rest back); returns when each was sent (time.time())."""
    sent: dict[int, float] = {}
    loop = asyncio.get_running_loop()
    origin = loop.time()
    for k in range(count):
        delay = origin + k * interval_s - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[k] = time.time()
        await enqueue(k)
    return sent


def latency_summary(records: list[tuple[int, float]], sent: dict[int, float]) -> dict[str, float]:
    """Enqueue-to-start percentiles (ms) of the paced jobs, warm-up jobs left out."""
    latencies = sorted((t - sent[s]) * 1000 for s, t in records if s < WARMUP_SEQ)
    return {
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
        "latency_p99_ms": percentile(latencies, 99),
        "latency_max_ms": latencies[-1],
    }


def summarize(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


# -- reporting --------------------------------------------------------------------

Row = tuple[str, str, bool]  # metric, label, higher is better


def fmt(value: float) -> str:
    if value >= 99.5:  # so that 99.97 reads "100", not "100.0"
        return f"{value:,.0f}"
    if value >= 9.995:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "n/a"
    if len(summary["runs"]) == 1:
        return fmt(summary["median"])
    return f"{fmt(summary['median'])} ({fmt(summary['min'])}-{fmt(summary['max'])})"


def advantage(summaries: dict[str, dict[str, Any] | None], higher_better: bool) -> float | None:
    ours = summaries.get("offload")
    peers = [s["median"] for name, s in summaries.items() if name != "offload" and s]
    if not ours or not peers:
        return None
    divisor = max(peers) if higher_better else ours["median"]
    if divisor <= 0 or min(peers) <= 0:  # a CPU figure too small to read in a short (smoke) run
        return None
    if higher_better:
        return float(ours["median"] / divisor)
    return float(min(peers) / divisor)


#: Metrics (by prefix) whose 0 is a measurement rather than a reading too coarse to show
#: anything: the idle workload's CPU is the scheduler's exact count, its wake-ups and round
#: trips are counts. For these a peer at 0 makes "offload vs best peer" 0.00x, not n/a.
MEASURED_ZERO_PREFIXES = ("idle_",)


def measured_advantage(
    summaries: dict[str, dict[str, Any] | None], higher_better: bool
) -> float | None:
    """As ``advantage``, for figures whose 0 is real: 0 against 0 is even (1.0), a best
    peer at 0 against offload above it is 0.0, offload alone at 0 has no finite ratio."""
    ours = summaries.get("offload")
    peers = [s["median"] for name, s in summaries.items() if name != "offload" and s]
    if not ours or not peers:
        return None
    mine = float(ours["median"])
    best = float(max(peers) if higher_better else min(peers))
    numerator, divisor = (mine, best) if higher_better else (best, mine)
    if divisor <= 0:
        return 1.0 if numerator <= 0 else None
    return numerator / divisor


def table(results: dict[str, dict[str, dict[str, Any]]], names: list[str], rows: list[Row]) -> str:
    """A Markdown table: a row per metric anyone has, a column per library, then the ratio."""
    header = ["workload", *names, "offload vs best peer"]
    lines = []
    for metric, label, higher in rows:
        summaries = {name: results.get(name, {}).get(metric) for name in names}
        if all(s is None for s in summaries.values()):
            continue
        if metric.startswith(MEASURED_ZERO_PREFIXES):
            ratio = measured_advantage(summaries, higher)
        else:
            ratio = advantage(summaries, higher)
        lines.append(
            [
                label,
                *(cell(summaries[n]) for n in names),
                "n/a" if ratio is None else f"{ratio:.2f}x",
            ]
        )
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]

    def row(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([row(header), rule, *(row(v) for v in lines)])


def git_state() -> dict[str, Any]:
    """The commit offload was measured at, and whether src/ had uncommitted changes."""

    def git(*argv: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(REPO), *argv], check=False, capture_output=True, text=True
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "src_dirty": bool(git("status", "--porcelain", "--", "src")),
    }


def versions(dists: Iterable[str]) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in dists:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    return out
