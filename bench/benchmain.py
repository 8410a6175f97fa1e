"""An engine benchmark's whole run: the repeats, the options, the tables and the JSON.

``main(engine)`` is what ``sqlite_bench.py``, ``pg_bench.py`` and
``redis_bench.py`` call: it parses the shared options, starts the side Redis,
runs every workload of ``benchrun.Bench`` for each repeat, kind and library in
turn, then prints the tables and notes and writes the results, so the three
report alike.
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
import tempfile
import time
from pathlib import Path
from typing import Any

import jobsink
from benchadapters import WORKER_PROCESSES, Library, RedisServer
from benchlib import BENCH, Row, git_state, kill_all_workers, log, summarize, table, versions
from benchrun import Bench, Engine

KINDS = ("def", "async")


def keep(got: dict[str, list[float]], values: dict[str, float]) -> None:
    for metric, value in values.items():
        got.setdefault(metric, []).append(value)


async def run(
    engine: Engine, args: argparse.Namespace, side: RedisServer, tmp: str
) -> dict[str, Any]:
    """Every workload, for each repeat, kind and library in turn (so that drift hits all alike)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OFFLOAD_", "BENCH_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    urls = {**engine.start(args, tmp), "BENCH_SIDE_REDIS_URL": side.url}
    env.update(urls)
    os.environ.update(urls)  # the clients' apps read them on import
    libs = [engine.make(name) for name in args.libs]
    bench = Bench(engine, args, env, side)
    jobs = {lib.name: min(args.jobs, args.caps.get(lib.name, args.jobs)) for lib in libs}
    mixed_jobs = {name: args.mixed_jobs or max(1, n // 10) for name, n in jobs.items()}
    raw: dict[str, dict[str, dict[str, list[float]]]] = {
        kind: {lib.name: {} for lib in libs} for kind in args.kinds
    }
    try:
        for lib in libs:
            await lib.prepare()
        for rep in range(args.repeat):
            for kind in args.kinds:
                for lib in libs:
                    n, tag = jobs[lib.name], f"repeat {rep + 1}/{args.repeat} {kind} {lib.name}"
                    got = raw[kind][lib.name]
                    scratch = f"{kind}-{lib.name}-{rep}-"
                    apis = [a for a in ("sync", "async", "bulk") if getattr(lib, f"has_{a}")]
                    for api in apis:
                        keep(got, await bench.enqueue(lib, api, lib.task("noop", kind), n))
                        log(f"{tag}: enqueue {api} {got[f'enqueue_{api}_jps'][-1]:,.0f} jobs/s")
                    out_dir = tempfile.mkdtemp(prefix=f"drain-{scratch}", dir=tmp)
                    drain = await bench.drain(lib, kind, n, out_dir)
                    keep(got, drain)
                    log(
                        f"{tag}: drain {drain['drain_ran_jps']:,.0f} jobs/s ran, "
                        f"{drain['drain_done_jps']:,.0f} settled, "
                        f"startup {drain['drain_startup_s']:.2f}s"
                    )
                    out_dir = tempfile.mkdtemp(prefix=f"latency-{scratch}", dir=tmp)
                    latency = await bench.latency(lib, kind, args.latency_jobs, out_dir)
                    keep(got, latency)
                    if "idle_cpu_pct" in latency:
                        log(
                            f"{tag}: idle {latency['idle_cpu_pct']:.2f}% of a core, "
                            f"{latency['idle_wakeups_per_s']:.1f} wake-ups/s, "
                            f"{latency['idle_rss_mb']:.0f} MB per worker process"
                        )
                    log(
                        f"{tag}: latency p50 {latency['latency_p50_ms']:.1f} ms, "
                        f"p99 {latency['latency_p99_ms']:.1f} ms"
                    )
                    out_dir = tempfile.mkdtemp(prefix=f"mixed-{scratch}", dir=tmp)
                    mixed = await bench.mixed(lib, kind, mixed_jobs[lib.name], out_dir)
                    keep(got, mixed)
                    log(f"{tag}: mixed {mixed['mixed_steady_jps']:,.0f} jobs/s")
        config = engine.config(libs)
    finally:
        for lib in libs:
            with contextlib.suppress(Exception):
                await lib.close()
        bench.side.close()
    results = {
        kind: {name: {m: summarize(v) for m, v in metrics.items()} for name, metrics in by.items()}
        for kind, by in raw.items()
    }
    return {
        "results": results,
        "jobs": jobs,
        "mixed_jobs": mixed_jobs,
        "config": config,
        "notes": notes(engine, libs, jobs, raw, args),
    }


# -- reporting --------------------------------------------------------------------


def rows(engine: Engine) -> list[Row]:
    """The table's rows: each workload's figures, CPU per job, the idle costs."""
    out: list[Row] = [
        ("enqueue_sync_jps", "enqueue, 1 call/job, sync API (jobs/s)", True),
        ("enqueue_async_jps", "enqueue, 1 call/job, async API (jobs/s)", True),
        ("enqueue_bulk_jps", "enqueue, bulk API, 1000/call (jobs/s)", True),
        ("drain_ran_jps", "drain, spawn -> all ran (jobs/s)", True),
        ("drain_done_jps", f"drain, spawn -> all settled in {engine.store} (jobs/s)", True),
        ("drain_steady_jps", "drain, first start -> last start (jobs/s)", True),
        ("mixed_steady_jps", "mixed, 10 ms jobs, first start -> last end (jobs/s)", True),
        ("mixed_ran_jps", "mixed, 10 ms jobs, spawn -> last end (jobs/s)", True),
        ("latency_p50_ms", "latency p50 (ms)", False),
        ("latency_p95_ms", "latency p95 (ms)", False),
        ("latency_p99_ms", "latency p99 (ms)", False),
    ]
    server = engine.server_key
    for prefix, what, who in (
        ("enqueue_sync", "sync enqueue", "client"),
        ("enqueue_async", "async enqueue", "client"),
        ("enqueue_bulk", "bulk enqueue", "client"),
        ("drain", "drain", "worker"),
        ("mixed", "mixed", "worker"),
        ("latency", "latency run", "worker"),
    ):
        label = "workers" if who == "worker" else who
        out.append((f"{prefix}_{who}_cpu_us", f"CPU/job: {what}, {label} (us)", False))
        if server:
            out.append(
                (f"{prefix}_{server}_cpu_us", f"CPU/job: {what}, {engine.store} (us)", False)
            )
    return [
        *out,
        ("idle_cpu_pct", "idle: CPU per worker process (% of a core)", False),
        ("idle_wakeups_per_s", "idle: wake-ups/s per worker process", False),
        *engine.idle_rows,
        ("idle_rss_mb", "idle: RSS per worker process (MB)", False),
    ]


def notes(
    engine: Engine,
    libs: list[Library],
    jobs: dict[str, int],
    raw: dict[str, dict[str, dict[str, list[float]]]],
    args: argparse.Namespace,
) -> list[str]:
    """One line per library whose setup a reader must know to read its column."""
    per_kind = {"def": args.def_concurrency, "async": args.concurrency}
    c = " " + " or ".join(f"{per_kind[kind]} ({kind} kind)" for kind in args.kinds)
    out = [lib.note.replace(" C", c) for lib in libs if lib.note]
    def_only = [lib.name for lib in libs if not lib.runs_async]
    if def_only and "async" in args.kinds:
        out.append(f"{', '.join(def_only)}: no async def tasks, so def ones in the async kind too")
    out += engine.notes(libs)
    out += [
        f"{name}: {count:,} jobs per workload, not {args.jobs:,} (--cap)"
        for name, count in jobs.items()
        if count != args.jobs
    ]
    for kind, by in raw.items():
        for name, metrics in by.items():
            for what in ("drain", "latency", "mixed"):
                runs = metrics.get(f"{what}_duplicate_runs", [])
                if any(runs):
                    out.append(
                        f"{name} ({kind}): {int(sum(runs))} job(s) ran twice in {what} runs "
                        f"({', '.join(str(int(r)) for r in runs)} per repeat)"
                    )
    return out


def parse_args(engine: Engine, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=engine.doc.split("\n")[0])
    add = parser.add_argument
    add("--jobs", type=int, default=None, help="jobs per workload (20000; smoke 300)")
    add("--repeat", type=int, default=None, help="repeats (3; smoke 1)")
    add("--smoke", action="store_true", help="300 jobs, 1 repeat, 50 latency jobs, 1 s idle")
    add("--kinds", default=",".join(KINDS), help="task kinds: def, async or both (def,async)")
    add("--concurrency", type=int, default=50, help="jobs at once per worker, async kind")
    add("--def-concurrency", type=int, default=8, help="threads per worker, def kind")
    add("--latency-jobs", type=int, default=None, help="latency jobs (500; smoke 50)")
    add("--latency-interval-ms", type=float, default=10.0)
    add("--chunk", type=int, default=1000, help="jobs per bulk call")
    add("--idle-s", type=float, default=None, help="idle window, s (60; smoke 1; 0: none)")
    add("--mixed-jobs", type=int, default=None, help="10 ms jobs in the mixed run (jobs/10)")
    add("--libs", default=",".join(engine.libraries))
    caps = f"{engine.caps}; smoke {engine.smoke_caps}"
    add("--cap", action="append", default=[], metavar="LIB=N", help=f"N jobs for LIB ({caps})")
    add("--out", default=None, help=f"JSON path (bench/results/{engine.name}-<date>.json)")
    engine.add_arguments(parser)
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (300 if args.smoke else 20_000)
    args.repeat = args.repeat or (1 if args.smoke else 3)
    args.latency_jobs = args.latency_jobs or (50 if args.smoke else 500)
    if args.idle_s is None:
        args.idle_s = 1.0 if args.smoke else 60.0
    args.kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    if not args.kinds or set(args.kinds) - set(KINDS):
        parser.error(f"--kinds takes def, async or both; got {args.kinds}")
    args.libs = [name.strip() for name in args.libs.split(",") if name.strip()]
    unknown = [name for name in args.libs if name not in engine.libraries]
    if unknown or not args.libs:
        parser.error(f"--libs takes any of {', '.join(engine.libraries)}; got {unknown}")
    args.caps = dict(engine.smoke_caps if args.smoke else engine.caps)
    for spec in args.cap:
        name, _, count = spec.partition("=")
        if name not in engine.libraries or not count.isdigit():
            parser.error(f"--cap takes LIB=N, got {spec!r}")
        args.caps[name] = int(count)
    return args


def kind_line(kind: str, args: argparse.Namespace) -> str:
    if kind == "def":
        return (
            f"def tasks (a sync redis-py INCR each), {args.def_concurrency} threads per "
            "worker process where the library runs several"
        )
    return (
        f"async def tasks (a redis.asyncio INCR each), {args.concurrency} at once per "
        "worker process where the library runs several"
    )


def main(engine: Engine, argv: list[str] | None = None) -> int:
    args = parse_args(engine, argv)

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    began = time.time()
    source_before = git_state()
    side = RedisServer("side")
    tmp = tempfile.mkdtemp(prefix=f"offload-{engine.name}-bench-")
    try:
        side.start()
        load_before = os.getloadavg()
        outcome = asyncio.run(run(engine, args, side, tmp))
        load_after = os.getloadavg()
    except BaseException:
        log(f"failed; stores, worker logs and job records are kept in {tmp}")
        raise
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        kill_all_workers()
        engine.stop()
        side.destroy()
    tables = {kind: table(outcome["results"][kind], args.libs, rows(engine)) for kind in args.kinds}
    config = {
        "jobs": args.jobs,
        "jobs_per_library": outcome["jobs"],
        "repeat": args.repeat,
        "smoke": args.smoke,
        "kinds": args.kinds,
        "worker_processes": WORKER_PROCESSES,
        "concurrency_per_worker": {"def": args.def_concurrency, "async": args.concurrency},
        "latency_jobs": args.latency_jobs,
        "latency_interval_ms": args.latency_interval_ms,
        "bulk_chunk": args.chunk,
        "mixed_jobs_per_library": outcome["mixed_jobs"],
        "mixed_job_sleep_s": jobsink.SLEEPY_S,
        "idle_window_s": args.idle_s,
        "side_redis": side.version,
        **outcome["config"],
        "notes": outcome["notes"],
    }
    dists = ["offload", *(engine.libraries[n].dist for n in args.libs), *engine.dists, "redis"]
    document = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        },
        "versions": versions(dict.fromkeys(dists)),
        "offload_source": {"at_start": source_before, "at_end": git_state()},
        "config": config,
        "elapsed_s": round(time.time() - began, 1),
        "results": outcome["results"],  # results[kind][library][metric]
        "tables": tables,
    }
    if args.out:
        out = Path(args.out)
    elif args.smoke:
        out = Path(tempfile.gettempdir()) / f"offload-{engine.name}-bench-smoke.json"
    else:
        out = BENCH / "results" / f"{engine.name}-{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(
        f"\n{args.jobs} jobs ({args.mixed_jobs or args.jobs // 10} of 10 ms in the mixed "
        f"workload), {args.repeat} repeat(s), {WORKER_PROCESSES} worker processes per library; "
        "median (min-max); offload vs best peer > 1 = offload better"
    )
    for kind in args.kinds:
        print(f"\n{kind} kind: {kind_line(kind, args)}\n\n{tables[kind]}")
    print()
    for line in outcome["notes"]:
        print(f"  {line}")
    print(f"\nwritten to {out} in {time.time() - began:.0f}s")
    return 0
