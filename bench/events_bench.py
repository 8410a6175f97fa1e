"""Live events: how soon another process hears of a change, and what events, history and
follow-ups cost the hot path, measured against the code before them in one run.

Run it with ``./run bench`` (or ``.venv/bin/python bench/events_bench.py``). For each
store (SQLite in a temp folder; PostgreSQL and Redis, throwaway servers) and each
version (``--before REF``, by default the last commit before live events, exported
with ``git archive``; ``after``, this working tree), in alternation and ``--repeat``
times, a child process (``events_probe.py``, with that version first on its path):

- drains N queued jobs with 2 workers (``-c 50``): jobs/s;
- sends jobs one every 20 ms to one idle worker: enqueue-to-start latency, ms.

Then, on the current version only, a child subscribes to the store's events while it
sends paced jobs, and records for each ``started`` and ``succeeded`` event the time
from the change in the worker (the event's store time) to its arrival: p50 and p99.
Medians of the repeats; ratios after/before (drain: higher is better; latency: lower).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from benchlib import git_state, log, summarize  # noqa: E402

#: The last commit before live events, attempt history and store-side follow-ups.
BEFORE_REF = "0398476"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="300 jobs, 50 paced, one repeat")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--paced", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stores", default="sqlite,postgres,redis")
    parser.add_argument("--before", default=BEFORE_REF, help="git ref of the 'before' code")
    args = parser.parse_args(argv)
    if args.smoke:
        args.jobs, args.paced, args.repeat = 300, 50, 1
    return args


def export(ref: str, into: Path) -> Path:
    """The ``src`` folder of ``ref``, written under ``into``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "src"], check=True,
                             capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def probe(src: Path, mode: str, url: str, n: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{HERE}")
    argv = [sys.executable, str(HERE / "events_probe.py"), mode, url, str(n)]
    done = subprocess.run(
        argv, check=False, env=env, cwd=HERE, capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} on {url} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


class Stores:
    """A fresh URL per measurement, on servers started once for the run."""

    def __init__(self, names: list[str], tmp: str) -> None:
        self.names = names
        self.tmp = tmp
        self.count = 0
        self.pg: Any = None
        self.redis: Any = None
        sys.path.insert(0, str(REPO / "tests"))  # the tests' throwaway servers
        if "postgres" in names:
            from servers import PostgresServer

            self.pg = PostgresServer().start()
        if "redis" in names:
            from servers import RedisServer

            self.redis = RedisServer().start()

    def fresh(self, name: str) -> str:
        self.count += 1
        if name == "sqlite":
            return f"sqlite:///{self.tmp}/events-{self.count}.db"
        if name == "postgres":
            return str(self.pg.url(self.pg.create_database()))
        return str(self.redis.url(prefix=f"ev{self.count}"))

    def close(self) -> None:
        for server in (self.pg, self.redis):
            if server is not None:
                server.destroy()


def run(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    versions = {"before": export(args.before, Path(tmp)), "after": REPO / "src"}
    stores = Stores(args.stores.split(","), tmp)
    raw: dict[str, dict[str, dict[str, list[float]]]] = {}
    events: dict[str, dict[str, Any]] = {}
    try:
        for round_ in range(args.repeat):
            order = list(versions.items())
            if round_ % 2:  # alternate which goes first: no version gains from a warm cache
                order.reverse()
            for store in stores.names:
                for version, src in order:
                    got = raw.setdefault(store, {}).setdefault(version, {})
                    drained = probe(src, "drain", stores.fresh(store), args.jobs)
                    paced = probe(src, "latency", stores.fresh(store), args.paced)
                    for key, value in {**drained, **paced}.items():
                        got.setdefault(key, []).append(value)
                    log(f"{store} {version}: {drained['drain_jobs_per_s']:,.0f} jobs/s, "
                        f"p50 {paced['latency_p50_ms']:.1f} ms")  # fmt: skip
        for store in stores.names:
            events[store] = probe(versions["after"], "events", stores.fresh(store), args.paced)
            log(f"{store} events: {events[store]}")
    finally:
        stores.close()
    cost = {
        store: {v: {k: summarize(vals) for k, vals in by.items()} for v, by in versions_.items()}
        for store, versions_ in raw.items()
    }
    return {"cost": cost, "events": events}


COST_ROWS = [
    ("drain_jobs_per_s", "drain (jobs/s)", True),
    ("latency_p50_ms", "single job, enqueue to start p50 (ms)", False),
    ("latency_p99_ms", "single job, enqueue to start p99 (ms)", False),
]


def markdown(results: dict[str, Any], before: str) -> str:
    lines = [
        f"| store | metric | before ({before}) | after | after/before |",
        "|---|---|---|---|---|",
    ]
    for store, by in results["cost"].items():
        for key, label, _higher in COST_ROWS:
            b, a = by["before"][key]["median"], by["after"][key]["median"]
            lines.append(f"| {store} | {label} | {b:,.1f} | {a:,.1f} | {a / b:.2f}x |")
    lines += ["", "| store | event | p50 (ms) | p99 (ms) | events |", "|---|---|---|---|---|"]
    for store, got in results["events"].items():
        for kind in ("started", "succeeded"):
            if f"event_{kind}_p50_ms" in got:
                lines.append(
                    f"| {store} | {kind} | {got[f'event_{kind}_p50_ms']:.2f} | "
                    f"{got[f'event_{kind}_p99_ms']:.2f} | {got[f'event_{kind}_count']} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="offload-events-bench-") as tmp:
        results = run(args, tmp)
    print(markdown(results, args.before))
    name = f"events-{datetime.now(UTC):%Y-%m-%d}{'-smoke' if args.smoke else ''}.json"
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / name).write_text(
        json.dumps({"args": vars(args), "git": git_state(), "results": results}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
