"""Searching and filtering with many jobs stored: how long the management API takes.

Run it with ``./run bench`` (or ``.venv/bin/python bench/search_bench.py``). For each
store (SQLite in a temp folder; PostgreSQL and Redis, throwaway servers), ``--jobs``
jobs (1,000,000 by default; ``--smoke``: 20,000) are stored with 50 owners, 20 tasks,
4 queues, a spread of states and file-name arguments; then each question is asked
``--repeat`` times through ``app.admin`` and the median time printed (ms). One job in
every 100,000 carries a rare word, so the rare search must look far.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))

from benchlib import git_state, log  # noqa: E402

from offload import Offload  # noqa: E402
from offload.backends.base import EnqueueParams, IdsParams  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="20,000 jobs, 3 repeats")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stores", default="sqlite,postgres,redis")
    args = parser.parse_args(argv)
    if args.smoke:
        args.jobs, args.repeat = 20_000, 3
    return args


def fill(app: Offload, n: int) -> float:
    """Store ``n`` jobs; a third are then cancelled, so states vary. Returns jobs/s."""
    tasks = [app.task(name=f"task_{t}", queue=f"q{t % 4}")(lambda name: name) for t in range(20)]
    started = time.perf_counter()
    for base in range(0, n, 1000):
        sigs = []
        for i in range(base, min(n, base + 1000)):
            word = "quarterly-zebra" if i % 100_000 == 7 else "report"
            task = tasks[i % 20]
            sigs.append(task.options(owner=f"tenant-{i % 50}").s(f"{word}-{i}.docx"))
        stored = app.backend.blocking.enqueue(EnqueueParams(jobs=[s.to_new_job() for s in sigs]))
        app.backend.blocking.cancel(IdsParams(ids=[r.id for r in stored[::3]]))
    return n / (time.perf_counter() - started)


def analyze(url: str) -> None:
    """Gather the planner's statistics, as autovacuum does soon after a bulk load: right
    after it, PostgreSQL guesses a few hundred rows per state and picks a bitmap scan and
    a sort over hundreds of thousands (124 ms for a page instead of well under 1 ms)."""
    import psycopg

    from offload.backends.postgres_url import parse_postgres_url

    config = parse_postgres_url(url)
    with psycopg.connect(config.conninfo, autocommit=True) as conn:
        conn.execute(f'ANALYZE "{config.schema}".jobs')


def timed(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def questions(app: Offload, since: float) -> dict[str, Callable[[], Any]]:
    a = app.admin
    return {
        "newest page": lambda: a.jobs(limit=50),
        "state + queue page": lambda: a.jobs(state="cancelled", queue="q1", limit=50),
        "owner page": lambda: a.jobs(owner="tenant-7", limit=50),
        "owner + state page": lambda: a.jobs(owner="tenant-7", state="queued", limit=50),
        "task page": lambda: a.jobs(task="task_3", limit=50),
        "time range page": lambda: a.jobs(created_after=since, limit=50),
        "text, common": lambda: a.jobs(text="report-12", limit=50),
        "text, rare": lambda: a.jobs(text="quarterly-zebra", limit=50),
        "count by state": lambda: a.count(state="queued"),
        "count by owner": lambda: a.count(owner="tenant-7"),
        "queues": a.queues,
    }


def run(args: argparse.Namespace, tmp: str) -> dict[str, dict[str, float]]:
    from servers import PostgresServer, RedisServer

    results: dict[str, dict[str, float]] = {}
    for store in args.stores.split(","):
        server: Any = None
        if store == "sqlite":
            url = f"sqlite:///{tmp}/search.db"
        elif store == "postgres":
            server = PostgresServer().start()
            url = server.url(server.create_database())
        else:
            server = RedisServer().start()
            url = server.url()
        try:
            app = Offload(url)
            since = app.store_now()
            rate = fill(app, args.jobs)
            if store == "postgres":
                analyze(url)
            log(f"{store}: {args.jobs:,} jobs stored at {rate:,.0f}/s")
            got = {"fill jobs/s": rate}
            for name, fn in questions(app, since + 1).items():
                got[name] = timed(fn, args.repeat)
                log(f"{store} {name}: {got[name]:.1f} ms")
            results[store] = got
            app.close()
        finally:
            if server is not None:
                server.destroy()
    return results


def markdown(results: dict[str, dict[str, float]], n: int) -> str:
    stores = list(results)
    lines = [f"| {n:,} jobs: median ms | " + " | ".join(stores) + " |",
             "|---|" + "---|" * len(stores)]  # fmt: skip
    names = [k for k in next(iter(results.values())) if k != "fill jobs/s"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{results[s][name]:.1f}" for s in stores) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="offload-search-") as tmp:
        results = run(args, tmp)
    print(markdown(results, args.jobs))
    name = f"search-{datetime.now(UTC):%Y-%m-%d}{'-smoke' if args.smoke else ''}.json"
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / name).write_text(
        json.dumps({"args": vars(args), "git": git_state(), "results": results}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
