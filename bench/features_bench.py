"""What each offload feature costs the job that uses it, and what it costs a job that does not.

Run it with ``./run bench`` (or ``.venv/bin/python bench/features_bench.py``); ``--smoke``
drains 300 jobs. For each store (SQLite in a temp folder; Redis, a throwaway server
when ``redis-server`` is installed) and each variant of ``features_app.py``, N jobs are
queued, then 2 ``offload worker`` processes (``-c 50``) serving only that variant's
queue drain them; the time until every job has recorded its start (``jobsink``, as in
the other benchmarks) gives jobs/s, and the table shows each variant's ratio to
``plain``. Repeated ``--repeat`` times (default 3); medians and ranges. A variant's
extra cost is its own: ``plain`` runs the same hot path as a job in an app that uses
no feature at all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import jobsink  # noqa: E402
from benchlib import (  # noqa: E402
    Workers,
    chunks,
    git_state,
    log,
    summarize,
    wait_for,
)

VARIANTS = ("plain", "fair", "limited", "batched")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="300 jobs, one repeat")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stores", default="sqlite,redis")
    args = parser.parse_args(argv)
    if args.smoke:
        args.jobs, args.repeat = 300, 1
    return args


def enqueue(url: str, variant: str, n: int) -> None:
    import features_app

    features_app.app.use_url(url)
    task = getattr(features_app, variant)
    for part in chunks(n, 1000):
        if variant == "fair":
            task.enqueue_many(task.options(owner=f"tenant-{i % 10}").s(i) for i in part)
        else:
            task.enqueue_many(task.s(i) for i in part)
    features_app.app.close()


async def drain(url: str, variant: str, n: int) -> float:
    out_dir = tempfile.mkdtemp(prefix="offload-features-")
    env = dict(os.environ, OFFLOAD_URL=url, BENCH_OUT_DIR=out_dir, PYTHONPATH=str(HERE))
    await asyncio.to_thread(enqueue, url, variant, n)
    argv = [sys.executable, "-m", "offload", "worker", "features_app:app", "-q", variant,
            "-c", "50", "--log-level", "WARNING"]  # fmt: skip
    started = time.perf_counter()
    with Workers(f"offload {variant}", [argv, argv], 50, out_dir, env) as workers:
        await wait_for(
            f"{variant} drained", lambda: jobsink.count_records(out_dir) >= n, workers, 300, 0.005
        )
        elapsed = time.perf_counter() - started
    seen = {seq for seq, _ in jobsink.read_records(out_dir)}
    if len(seen) != n:
        raise SystemExit(f"{variant}: {len(seen)} distinct jobs ran, expected {n}")
    return n / elapsed


def store_urls(stores: list[str], tmp: str) -> tuple[dict[str, str], list[Any]]:
    urls: dict[str, str] = {}
    servers: list[Any] = []
    if "sqlite" in stores:
        urls["sqlite"] = f"sqlite:///{tmp}/features.db"
    if "redis" in stores:
        from benchadapters import RedisServer

        try:
            server = RedisServer("features")
        except RuntimeError as exc:
            log(f"skipping Redis: {exc}")
        else:
            server.start()
            servers.append(server)
            urls["redis"] = server.url
    return urls, servers


def fresh(url: str, tmp: str, round_: int) -> str:
    if url.startswith("sqlite"):
        return f"sqlite:///{tmp}/features-{round_}.db"
    import redis

    redis.Redis.from_url(url).flushdb()
    return url


async def run(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    urls, servers = store_urls(args.stores.split(","), tmp)
    rates: dict[str, dict[str, list[float]]] = {s: {v: [] for v in VARIANTS} for s in urls}
    try:
        round_ = 0
        for _ in range(args.repeat):
            for store, url in urls.items():
                for variant in VARIANTS:
                    round_ += 1
                    rate = await drain(fresh(url, tmp, round_), variant, args.jobs)
                    rates[store][variant].append(rate)
                    log(f"{store} {variant}: {rate:,.0f} jobs/s")
    finally:
        for server in servers:
            server.destroy()
    return {store: {v: summarize(r) for v, r in by.items()} for store, by in rates.items()}


def markdown(results: dict[str, Any]) -> str:
    lines = ["| store | variant | drain (jobs/s), median [range] | vs plain |", "|---|---|---|---|"]
    for store, by in results.items():
        base = by["plain"]["median"]
        for variant, s in by.items():
            lines.append(
                f"| {store} | {variant} | {s['median']:,.0f} [{s['min']:,.0f}-{s['max']:,.0f}]"
                f" | {s['median'] / base:.2f}x |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="offload-features-") as tmp:
        results = asyncio.run(run(args, tmp))
    print(markdown(results))
    name = f"features-{datetime.now(UTC):%Y-%m-%d}{'-smoke' if args.smoke else ''}.json"
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / name).write_text(
        json.dumps({"args": vars(args), "git": git_state(), "results": results}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
