"""Every dashboard page's time with many jobs stored, on SQLite and on PostgreSQL.

Run it with ``.venv/bin/python bench/dashboard_pages.py`` (about 20 minutes on 2 cores;
``--smoke``: 20,000 jobs, 5 requests a page, a few seconds; ``--jobs N``, ``--stores
sqlite`` or ``postgres`` for one). For each store (SQLite in a temp folder; PostgreSQL,
a throwaway cluster from ``tests/servers.py``):

1. Fill: ``--jobs`` jobs (1,000,000 by default) through the public API, ``enqueue_many``
   1,000 at a time; one chunk in ten as ten batches of 100 (``app.batch``). Four tasks
   on three queues, 200 owners, arguments with file names, invoice numbers and e-mail
   addresses; one job in 100,000 names a rare word (``RARE``; none below 77,778 jobs).
2. End states, set with SQL directly on the store: workers would take hours over a
   million jobs, so the bench writes what they would have left. Jobs are spread evenly
   over the last six days, in id order. The reports queue is behind: its jobs among the
   newest 5% (about seven hours) still wait, one in five scheduled within the hour; a
   job of another queue that would end after now runs (or waits, if not yet started).
   The others ended: 2.5% dead after 3 attempts (error, traceback, attempt history),
   2% cancelled while they waited, the rest succeeded (worker, start, end, result).
   Batches are counted down to match (those with a waiting member stay open). The
   per-minute counts are rewritten as if jobs had come one at a time over the six days
   (a web request each): the store's enqueue counts by creation minute (SQLite adds them
   up in a row per minute, queue and task; PostgreSQL keeps a row per transaction, so
   a row per job), and four workers' rows of their starts, ends and durations. Those
   four workers beat. PostgreSQL is then ``VACUUM ANALYZE``d, as autovacuum soon would;
   SQLite gets no ``ANALYZE``, as offload never runs one.
3. ``offload serve`` on this module's ``build_app``; a logged-in admin's client asks each
   page ``--warmup`` times, then ``--repeat`` times timed (the whole request, client
   side, on localhost). The overview's queue counts and activity are reads a server
   process shares, answered from its last answer while a newer one is fetched: asked
   again and again, the overview is timed with its answer at hand. So it is timed as its
   first viewer gets it as well, waiting for those reads: once each in ``--first``
   fresh server processes. The table gives p50, p95 and max in ms, per store; the
   figures go to ``bench/results/dashboard-<date>.json``.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import html
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))

from benchlib import git_state, log, percentile  # noqa: E402

from offload import Offload  # noqa: E402
from offload.backends.params import CountsParams  # noqa: E402
from offload.records import (  # noqa: E402
    DURATION_BUCKETS_MS,
    ENQUEUE_COUNTS_TTL_S,
    MinuteCounts,
    WorkerInfo,
)

SPAN_S = 6 * 24 * 3600  # jobs were created over the last six days
BEHIND = 0.05  # the reports queue has not run its newest 5% (about 7 hours) yet
RARE = "zanzibar"  # in one job of 100,000
COMMON = ("invoice", "contract", "receipt", "statement")  # a word each, in turn
OWNERS = 200
PASSWORD = "bench-dashboard-password"
CHUNK = 1000


def build_app(url: str | None = None) -> Offload:
    """The bench's app (``offload serve dashboard_pages:build_app``, store ``$OFFLOAD_URL``)."""
    app = Offload(url)

    @app.task(name="convert.document", queue="convert", retries=2)
    def convert_document(file_name: str, pages: int, owner_ref: str) -> str:
        return file_name

    @app.task(name="thumbnail.make", queue="convert", retries=2)
    def make_thumbnail(file_name: str, size: int) -> str:
        return file_name

    @app.task(name="mail.send", queue="mail", retries=2)
    def send_mail(to: str, subject: str) -> None:
        return None

    @app.task(name="report.build", queue="reports", retries=2)
    def build_report(customer: str, period: str, invoices: list[str]) -> str:
        return period

    @app.periodic("0 2 * * *", name="report.nightly", queue="reports")
    def nightly() -> None:
        return None

    return app


# -- filling ----------------------------------------------------------------------


def signature(app: Offload, i: int) -> Any:
    """Job ``i``'s task and arguments (the same for the same ``i``)."""
    invoice = f"INV-2026-{i % 997_331:06d}"
    word = RARE if i % 100_000 == 77_777 else COMMON[i // 10 % len(COMMON)]
    kind = i % 10
    if kind < 4:
        name = f"{word}-{invoice}.{('pdf', 'docx', 'odt', 'xlsx')[i % 4]}"
        task, args = "convert.document", (name, 1 + i % 37, f"ref-{i:08d}")
    elif kind < 6:
        task, args = "thumbnail.make", (f"scan-{i:08d}-{word}.png", 256)
    elif kind < 9:
        task, args = "mail.send", (f"user{i % 50_000}@example.com", f"Your {word} {invoice}")
    else:
        invoices = [f"INV-2026-{(i + k) % 997_331:06d}" for k in range(3)]
        task, args = "report.build", (f"{word} customer {i % 5000}", f"2026-{1 + i % 12:02d}",
                                      invoices)  # fmt: skip
    return app.tasks[task].options(owner=f"customer-{i * 7919 % OWNERS:03d}").s(*args)


def fill(app: Offload, n: int) -> float:
    """Store ``n`` jobs, one chunk in ten as batches; returns the seconds it took."""
    enqueue_many = app.tasks["convert.document"].enqueue_many  # takes any task's signatures
    started = time.perf_counter()
    for number, base in enumerate(range(0, n, CHUNK)):
        sigs = [signature(app, i) for i in range(base, min(n, base + CHUNK))]
        if number % 10 == 5:
            for start in range(0, len(sigs), 100):
                app.batch(sigs[start : start + 100])
        else:
            enqueue_many(sigs)
        if number % 100 == 99:
            done = base + len(sigs)
            log(f"  {done:,} jobs stored ({done / (time.perf_counter() - started):,.0f}/s)")
    return time.perf_counter() - started


# -- what workers would have left ------------------------------------------------------

#: task -> (run time range in s, the error of its dead jobs)
KINDS = {
    "convert.document": ((0.5, 20.0), ("ConversionError", "LibreOffice could not convert the "
                                       "file: it is damaged or protected by a password")),
    "thumbnail.make": ((0.1, 2.0), ("UnidentifiedImageError", "cannot identify image file")),
    "mail.send": ((0.05, 1.5), ("SMTPRecipientsRefused", "550 5.1.1 <user@example.com>: "
                                "recipient address rejected: user unknown")),
    "report.build": ((2.0, 60.0), ("TimeoutError", "the job ran past its 600 s time limit")),
}  # fmt: skip
WORKERS = [f"worker-{k}@bench-host" for k in range(4)]
#: A row of ends: what UPDATE sets, the job's id last.
End = tuple[str, float, int, int, Any, Any, Any, Any, Any, Any, float, float, Any, str]


def _bucket(seconds: float) -> int:
    return bisect.bisect_left(DURATION_BUCKETS_MS, seconds * 1000)


def ends(jobs: list[tuple[str, str, str]], now: float, counts: dict[Any, MinuteCounts],
         running: dict[str, list[str]]) -> Iterator[End]:  # fmt: skip
    """Each job's end state (see the module's docstring), oldest first; ``counts`` gets
    the per-minute counts a worker would have written for them, ``running`` the ids each
    worker runs."""
    rng = random.Random(11)
    n = len(jobs)
    encode = msgspec.json.encode
    for i, (job_id, task, queue) in enumerate(jobs):
        created = now - 5 - SPAN_S + (i + 1) * SPAN_S / n
        (low, high), (err_type, err_message) = KINDS.get(task, ((0.1, 1.0), ("Error", "failed")))
        worker = WORKERS[i % len(WORKERS)]
        waited = rng.expovariate(1 / 2.0)
        started = created + waited
        finished = started + rng.uniform(low, high)
        backlog = queue == "reports" and i >= n * (1 - BEHIND)
        if backlog or finished > now - 1:
            if backlog and i // 10 % 5 == 0:
                yield ("scheduled", now + rng.uniform(60, 3600), 0, 0, None, None, None,
                       None, None, None, created, 0.0, None, job_id)  # fmt: skip
            elif started < now - 1 and not backlog:
                running.setdefault(worker, []).append(job_id)
                yield ("running", created, 1, 1, worker, started, None, None, None, None,
                       created, 0.3, now + 86_400, job_id)  # fmt: skip
            else:
                yield ("queued", created, 0, 0, None, None, None, None, None, None, created,
                       0.0, None, job_id)  # fmt: skip
            continue
        roll = rng.random()
        if 0.025 <= roll < 0.045:  # cancelled while it waited
            yield ("cancelled", created, 0, 0, None, None, started, None, None, None, created,
                   0.0, None, job_id)  # fmt: skip
            continue
        dead = roll < 0.025
        tries = 3 if dead else 1
        history = []
        at = created
        for number in range(1, tries + 1):
            begin = at + (waited if number == 1 else 10.0 * number)
            at = begin + (finished - started)
            error = {"type": err_type, "message": err_message}
            history.append({"number": number, "worker": worker, "started_at": begin,
                            "ended_at": at, "outcome": "failed", "error": error})  # fmt: skip
        minute = int(at // 60)
        row = counts.get((minute, queue, task, worker)) or MinuteCounts(
            minute=minute, queue=queue, task=task, source=worker,
            wait_ms=[0] * (len(DURATION_BUCKETS_MS) + 1),
            run_ms=[0] * (len(DURATION_BUCKETS_MS) + 1),
        )  # fmt: skip
        row.wait_ms[_bucket(waited)] += 1
        row.run_ms[_bucket(finished - started)] += 1
        counts[(minute, queue, task, worker)] = msgspec.structs.replace(
            row, started=row.started + tries, succeeded=row.succeeded + (not dead),
            retried=row.retried + tries - 1, dead=row.dead + dead,
        )  # fmt: skip
        if dead:
            trace = (
                "Traceback (most recent call last):\n"
                '  File "/srv/app/tasks.py", line 88, in run\n    return handler(*args)\n'
                f"{err_type}: {err_message}\n"
            )
            error = {"type": err_type, "message": err_message, "traceback": trace}
            yield ("dead", history[-1]["started_at"], 3, 3, worker, history[-1]["started_at"],
                   at, None, encode(error), encode(history).decode(), created, 0.5, None,
                   job_id)  # fmt: skip
        else:
            yield ("succeeded", created, 1, 1, worker, started, finished, b'"done"', None,
                   None, created, 1.0, None, job_id)  # fmt: skip


# -- the stores, written to directly ----------------------------------------------------


class SqliteStore:
    """The SQLite file, through its own connection."""

    def __init__(self, url: str) -> None:
        self.conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        self.conn.execute("PRAGMA busy_timeout = 60000")

    def jobs(self) -> list[tuple[str, str, str]]:
        return self.conn.execute("SELECT id, task, queue FROM offload_jobs ORDER BY id").fetchall()

    def write(self, rows: Iterator[End], now: float, running: dict[str, list[str]]) -> None:
        self.conn.execute("BEGIN")
        self.conn.executemany(
            "UPDATE offload_jobs SET state = ?, run_at = ?, attempt = ?, delivery = ?, "
            "worker = ?, started_at = ?, finished_at = ?, result = ?, error = ?, attempts = ?, "
            "created_at = ?, progress = ?, lease_until = ? WHERE id = ?",
            rows,
        )
        self.conn.execute(
            "UPDATE offload_batches SET remaining = (SELECT count(*) FROM offload_jobs AS j "
            "WHERE j.batch = offload_batches.id AND j.state IN ('queued', 'scheduled', "
            "'running')), created_at = (SELECT min(created_at) FROM offload_jobs AS j "
            "WHERE j.batch = offload_batches.id)"
        )
        self.conn.execute(
            "UPDATE offload_batches SET completed_at = (SELECT max(finished_at) "
            "FROM offload_jobs AS j WHERE j.batch = offload_batches.id) WHERE remaining = 0"
        )
        self.conn.execute("DELETE FROM offload_counts")  # the fill's enqueues, all this minute
        self.conn.execute(  # the store's own row per minute, queue and task
            "INSERT INTO offload_counts (minute, queue, task, source, enqueued, expires_at) "
            "SELECT CAST(created_at / 60 AS INTEGER), queue, task, 'enqueue', count(*), "
            "min(created_at) + ? FROM offload_jobs GROUP BY 1, 2, 3", (ENQUEUE_COUNTS_TTL_S,),
        )  # fmt: skip
        for name in WORKERS:
            info = worker_info(name, now, running.get(name, []))
            self.conn.execute("INSERT INTO offload_workers (id, info, expires_at) VALUES (?, ?, ?)",
                              (name, msgspec.json.encode(info), now + 86_400))  # fmt: skip
        self.conn.execute("COMMIT")

    def sample(self, sql: str) -> str:
        return str(self.conn.execute(sql.replace("{jobs}", "offload_jobs")).fetchone()[0])

    def close(self) -> None:
        self.conn.close()


class PostgresStore:
    """The PostgreSQL database, through its own connection: ends are COPYed to a temporary
    table and set by one UPDATE ... FROM."""

    def __init__(self, url: str) -> None:
        import psycopg

        from offload.backends.postgres_url import parse_postgres_url

        config = parse_postgres_url(url)
        self.schema = f'"{config.schema}"'
        self.conn = psycopg.connect(config.conninfo, autocommit=True)

    def jobs(self) -> list[tuple[str, str, str]]:
        sql = f"SELECT id, task, queue FROM {self.schema}.jobs ORDER BY id"
        return self.conn.execute(sql).fetchall()  # type: ignore[return-value]

    def write(self, rows: Iterator[End], now: float, running: dict[str, list[str]]) -> None:
        s = self.schema
        with self.conn.transaction():
            self.conn.execute(
                "CREATE TEMP TABLE ends (state text, run_at float8, attempt int, delivery int, "
                "worker text, started_at float8, finished_at float8, result bytea, error text, "
                "attempts text, created_at float8, progress float8, lease_until float8, "
                "id text) ON COMMIT DROP"
            )
            with self.conn.cursor().copy("COPY ends FROM STDIN") as copy:
                for row in rows:
                    error = row[8]
                    copy.write_row((*row[:8], error and error.decode(), *row[9:]))
            self.conn.execute(
                f"UPDATE {s}.jobs AS j SET state = e.state, run_at = to_timestamp(e.run_at), "
                "attempt = e.attempt, delivery = e.delivery, worker = e.worker, "
                "started_at = to_timestamp(e.started_at), finished_at = "
                "to_timestamp(e.finished_at), result = e.result, error = e.error::jsonb, "
                "attempts = e.attempts::json, created_at = to_timestamp(e.created_at), "
                "progress = e.progress, lease_until = to_timestamp(e.lease_until) "
                "FROM ends AS e WHERE j.id = e.id"
            )
            self.conn.execute(
                f"UPDATE {s}.job_search AS j SET created_at = to_timestamp(e.created_at) "
                "FROM ends AS e WHERE j.id = e.id"
            )
            self.conn.execute(
                f"UPDATE {s}.batches AS b SET remaining = m.waiting, created_at = m.created, "
                "completed_at = CASE WHEN m.waiting = 0 THEN m.finished END "
                "FROM (SELECT batch, min(created_at) AS created, max(finished_at) AS finished, "
                "count(*) FILTER (WHERE state IN ('queued', 'scheduled', 'running')) AS waiting "
                f"FROM {s}.jobs WHERE batch IS NOT NULL GROUP BY batch) AS m WHERE b.id = m.batch"
            )
            self.conn.execute(f"DELETE FROM {s}.counts")  # the fill's enqueues, this minute
            self.conn.execute(  # a row per enqueue transaction: here, one per job
                f"INSERT INTO {s}.counts (minute, queue, task, source, enqueued, expires_at) "
                "SELECT floor(extract(epoch FROM created_at) / 60)::bigint, queue, task, "
                "'enqueue:' || row_number() OVER (ORDER BY id), 1, "
                f"created_at + make_interval(secs => %s) FROM {s}.jobs", (ENQUEUE_COUNTS_TTL_S,),
            )  # fmt: skip
            for name in WORKERS:
                info = msgspec.json.encode(worker_info(name, now, running.get(name, []))).decode()
                self.conn.execute(
                    f"INSERT INTO {s}.workers (id, info, last_seen, expires_at) "
                    "VALUES (%s, %s, now(), now() + interval '1 day')", (name, info),
                )  # fmt: skip
        for table in ("jobs", "job_search", "batches"):  # what autovacuum would soon do
            self.conn.execute(f"VACUUM ANALYZE {s}.{table}")

    def sample(self, sql: str) -> str:
        row = self.conn.execute(sql.replace("{jobs}", f"{self.schema}.jobs")).fetchone()
        return str(row[0]) if row else ""

    def close(self) -> None:
        self.conn.close()


def worker_info(name: str, now: float, running: list[str]) -> WorkerInfo:
    return WorkerInfo(id=name, host="bench-host", pid=1000 + WORKERS.index(name),
                      queues=["convert", "mail", "reports"], concurrency=8,
                      started_at=now - 86_400, last_seen=now, running=running)  # fmt: skip


# -- the pages ------------------------------------------------------------------------


@contextlib.contextmanager
def serving(url: str, folder: str) -> Iterator[str]:
    """``offload serve`` of this module's app on a free port; its base URL."""
    from servers import free_port

    port = free_port()
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OFFLOAD_URL": url, "PYTHONPATH": path}
    argv = [sys.executable, "-m", "offload", "serve", "dashboard_pages:build_app",
            "--port", str(port), "--log-level", "warning"]  # fmt: skip
    log_path = Path(folder) / f"serve-{port}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log_path.read_text()[-3000:])
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def login(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=600)
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/login").text)
    assert found is not None
    answer = client.post("/login", data={"name": "bench", "password": PASSWORD, "next": "/",
                                         "csrf": found.group(1)})  # fmt: skip
    if answer.status_code != 303:
        raise RuntimeError(f"login refused: {answer.status_code} {answer.text[:300]}")
    return client


def utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M")


def pages(client: httpx.Client, store: Any, now: float) -> dict[str, str]:
    """Each page asked, by what it shows; ids from the store, page 2 from page 1's link."""
    dead = store.sample("SELECT id FROM {jobs} WHERE state = 'dead' AND batch IS NOT NULL "
                        "ORDER BY id DESC LIMIT 1")  # fmt: skip
    batch = store.sample("SELECT batch FROM {jobs} WHERE batch IS NOT NULL ORDER BY id DESC "
                         "LIMIT 1")  # fmt: skip
    first = client.get("/jobs").text
    found = re.search(r'<a href="([^"]+)" rel="next"', first)
    assert found is not None, "no link to the next page"
    day, ago3, ago5 = now - 86_400, now - 3 * 86_400, now - 5 * 86_400
    return {
        "overview (hour), repeated": "/",
        "overview (day), repeated": "/?span=day",
        "charts.json (day), repeated": "/charts.json?span=day",
        "jobs, newest": "/jobs",
        "jobs, oldest first": "/jobs?order=oldest",
        "jobs, page 2 (next link)": html.unescape(found.group(1)),
        "jobs, state=dead": "/jobs?state=dead",
        "jobs, state=queued": "/jobs?state=queued",
        "jobs, queue + task": "/jobs?queue=convert&task=thumbnail.make",
        "jobs, owner": "/jobs?owner=customer-042",
        "jobs, owner + state=dead": "/jobs?owner=customer-042&state=dead",
        f"jobs, text rare ({RARE})": f"/jobs?text={RARE}&task=mail.send",
        "jobs, text common (invoice)": "/jobs?text=invoice&task=convert.document",
        "jobs, one hour a day ago": f"/jobs?after={utc(day)}&before={utc(day + 3600)}",
        "jobs, one hour 5 days ago": f"/jobs?after={utc(ago5)}&before={utc(ago5 + 3600)}",
        "jobs, one day 3 days ago": f"/jobs?after={utc(ago3)}&before={utc(ago3 + 86_400)}",
        "jobs, one day 5 days ago": f"/jobs?after={utc(ago5 - 86_400)}&before={utc(ago5)}",
        "job (dead, in a batch)": f"/jobs/{dead}",
        "batches": "/batches",
        "batch (newest)": f"/batches/{batch}",
        "workers": "/workers",
        "schedules": "/schedules",
        "bulk cancel: count queued reports": "/bulk/cancel?state=queued&queue=reports",
    }


def ask(client: httpx.Client, path: str) -> float:
    """One request's time in ms (it must answer 200)."""
    started = time.perf_counter()
    answer = client.get(path)
    took = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:500]}")
    return took


def spread(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {"p50": percentile(times, 50), "p95": percentile(times, 95), "max": times[-1]}


#: The overview as the first viewer of a server process gets it (``first_viewer``).
FIRST_VIEWER = {"overview (hour), first viewer": "/", "overview (day), first viewer": "/?span=day"}


def timed(client: httpx.Client, path: str, warmup: int, repeat: int) -> dict[str, float]:
    for _ in range(warmup):
        ask(client, path)
    return spread([ask(client, path) for _ in range(repeat)])


def first_viewer(url: str, tmp: str, path: str, times: int) -> dict[str, float]:
    """The overview as its first viewer gets it: the server process has no answer of its
    shared reads yet (nor one under a minute old), so the page waits for them. Each time a
    fresh ``offload serve``, warmed by another page first."""
    took = []
    for _ in range(times):
        with serving(url, tmp) as base, contextlib.closing(login(base)) as client:
            ask(client, "/jobs")
            took.append(ask(client, path))
    return spread(took)


# -- the run ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="20,000 jobs, 5 requests a page")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--first", type=int, default=5, help="fresh servers per first viewer")
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args(argv)
    if args.smoke:
        args.jobs, args.repeat, args.first = 20_000, 5, 2
    return args


def run_store(name: str, url: str, args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    app = build_app(url)
    try:
        fill_s = fill(app, args.jobs)
        log(f"{name}: {args.jobs:,} jobs stored in {fill_s:.0f} s")
        started = time.perf_counter()
        now = app.store_now()
        store = SqliteStore(url) if name == "sqlite" else PostgresStore(url)
        counts: dict[Any, MinuteCounts] = {}
        running: dict[str, list[str]] = {}
        store.write(ends(store.jobs(), now, counts, running), now, running)
        app.backend.blocking.record_counts(CountsParams(rows=list(counts.values()),
                                                        ttl_s=app.counts_retention_s))  # fmt: skip
        app.admin.create_user(name="bench", owner="ops", role="admin", password=PASSWORD)
        ends_s = time.perf_counter() - started
        log(f"{name}: end states written in {ends_s:.0f} s")
    finally:
        app.close()
    got: dict[str, Any] = {"fill_s": fill_s, "ends_s": ends_s, "pages": {}}

    def keep(page: str, path: str, figures: dict[str, Any]) -> None:
        got["pages"][page] = {**figures, "path": path}
        log(f"{name} {page}: p50 {figures['p50']:.1f} ms, max {figures['max']:.1f} ms")

    try:
        for page, path in FIRST_VIEWER.items():
            keep(page, path, first_viewer(url, tmp, path, args.first))
        with serving(url, tmp) as base, contextlib.closing(login(base)) as client:
            for page, path in pages(client, store, now).items():
                keep(page, path, timed(client, path, args.warmup, args.repeat))
    finally:
        store.close()
    return got


def markdown(results: dict[str, dict[str, Any]], n: int) -> str:
    stores = list(results)
    head = "| page | " + " | ".join(f"{s} p50 | p95 | max" for s in stores) + " |"
    lines = [f"{n:,} jobs stored; ms per request (client side, localhost)", "", head,
             "|---|" + "---:|" * (3 * len(stores))]  # fmt: skip
    for page in next(iter(results.values()))["pages"]:
        cells = [
            f"{results[s]['pages'][page][k]:.1f}" for s in stores for k in ("p50", "p95", "max")
        ]
        lines.append(f"| {page} | " + " | ".join(cells) + " |")
    lines.append("")
    for s in stores:
        lines.append(f"{s}: filled in {results[s]['fill_s']:.0f} s "
                     f"({n / results[s]['fill_s']:,.0f} jobs/s), end states in "
                     f"{results[s]['ends_s']:.0f} s")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from servers import PostgresServer

    args = parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="offload-dashboard-") as tmp:
        for name in args.stores.split(","):
            server = None
            if name == "sqlite":
                url = f"sqlite:///{tmp}/dashboard.db"
            else:
                server = PostgresServer().start()
                url = server.url(server.create_database())
            try:
                results[name] = run_store(name, url, args, tmp)
            finally:
                if server is not None:
                    server.destroy()
    print(markdown(results, args.jobs))
    stamp = f"{datetime.now(UTC):%Y-%m-%d}{'-smoke' if args.smoke else ''}"
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"dashboard-{stamp}.json").write_text(json.dumps(
        {"args": vars(args), "git": git_state(), "results": results}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
