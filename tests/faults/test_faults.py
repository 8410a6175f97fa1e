"""The fault suite: break the engine from every side and count lost, stuck and doubled jobs.

Each test is one row of the table printed at the end of the session (see harness.py for
what each column counts). Every row must show 0 lost, 0 stuck and 0 overlapping runs;
faults that involve no crash must also show 0 runs twice and no worker exiting by itself.
Scenarios are small (a few hundred short jobs, 2 worker processes); the waits are bounded
deadlines for the engine to recover, never assertions about speed.
"""

from __future__ import annotations

import errno
import random
import sqlite3
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import fault_app
import pytest
from harness import Row, Scenario
from proxy import SilentProxy

from servers import PostgresServer, RedisServer

ALL_STORES = ["sqlite", "postgres", "redis"]
SERVER_STORES = ["postgres", "redis"]
pytestmark = pytest.mark.slow


def shared_url(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if store == "sqlite":
        return f"sqlite:///{tmp_path}/jobs.db"
    return str(request.getfixturevalue(f"{store}_url"))  # a fresh schema / key prefix


# -- SIGKILL storm -------------------------------------------------------------------
@pytest.mark.parametrize("store", ALL_STORES)
def test_sigkill_storm(
    store: str, tmp_path: Path, request: pytest.FixtureRequest, fault_table: list[Row]
) -> None:
    """Workers SIGKILLed every half second: jobs come back after their 2 s lease."""
    url = shared_url(store, tmp_path, request)
    rng = random.Random(1)
    kills = 0
    with Scenario(fault_table, store, "SIGKILL storm", url, tmp_path, lease_s=2.0,
                  concurrency=2) as s:  # fmt: skip
        total = len(s.enqueue(600))
        s.fleet.start()
        s.wait_for(lambda: s.done() > 0, 60)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and s.done() < total - 60:
            time.sleep(rng.uniform(0.4, 0.8))
            s.fleet.kill(rng.randrange(2))
            kills += 1
        s.notes.append(f"{kills} SIGKILLs")
    # a job whose worker died after its body ran and before the outcome was stored runs again
    s.check(run_twice=False)
    assert kills >= 5, "the run ended before enough workers were killed to mean anything"


# -- store restart ---------------------------------------------------------------------
@pytest.mark.parametrize("store", SERVER_STORES)
def test_store_restart(
    store: str, tmp_path: Path, request: pytest.FixtureRequest, fault_table: list[Row]
) -> None:
    """The server stops (cleanly, its data kept) for 3 s mid-run, then comes back."""
    server: PostgresServer | RedisServer = request.getfixturevalue(f"restartable_{store}")
    if isinstance(server, PostgresServer):
        url = f"{server.url(server.create_database())}?schema=f_{uuid.uuid4().hex[:10]}"
    else:
        url = server.url(prefix=f"f{uuid.uuid4().hex[:12]}")
    with Scenario(fault_table, store, "store restart", url, tmp_path) as s:
        s.enqueue(400)
        s.fleet.start()
        s.wait_for(lambda: s.done() >= 80, 60)
        server.restart(down_s=3)
        retrying(lambda: s.enqueue(40))  # jobs after the restart
    s.check()


def retrying(action: object, attempts: int = 20) -> None:
    """The test's own client may need a few tries to reconnect after the fault."""
    assert callable(action)
    for attempt in range(attempts):
        try:
            action()
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


# -- silent network partition -------------------------------------------------------
@pytest.mark.timeout(400)  # when workers hang: three bounded waits, then a 30 s stop each
@pytest.mark.parametrize("store", SERVER_STORES)
def test_silent_partition(
    store: str, tmp_path: Path, request: pytest.FixtureRequest, fault_table: list[Row]
) -> None:
    """Workers reach the store through a proxy that goes silent for 6 s (no byte, no close),
    once while they are idle (waiting for a wake-up) and once while they are busy; the flows
    it cut stay dead, so workers must notice and reconnect."""
    url = shared_url(store, tmp_path, request)
    port = urlsplit(url).port
    proxy = SilentProxy(port).start()
    worker_url = url.replace(f":{port}/", f":{proxy.port}/", 1)
    try:
        with Scenario(fault_table, store, "silent partition", url, tmp_path,
                      worker_url=worker_url, settle_s=60) as s:  # fmt: skip
            s.fleet.start()
            time.sleep(3)  # both idle, waiting for work
            proxy.partition()
            s.enqueue(20)  # stored directly: the idle workers' wake-ups never arrive
            time.sleep(6)
            proxy.heal()
            s.wait_for(lambda: s.done() >= 20, 30)
            s.enqueue(300)
            s.wait_for(lambda: s.done() >= 100, 30)
            proxy.partition()  # busy now: claims, heartbeats and outcomes in flight
            s.enqueue(20)
            time.sleep(6)
            proxy.heal()
            s.enqueue(20)
    finally:
        proxy.close()
    # a worker cut off past its lease may see its job run again elsewhere: allowed, not overlap
    s.check(run_twice=False)


# -- SQLite disk full ------------------------------------------------------------------
def fill(path: Path) -> int:
    """Write to ``path`` until the disk is full; the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as out:
        for size in (1 << 20, 1 << 12, 1 << 6, 1):
            try:
                while True:
                    written += out.write(b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return written


def test_sqlite_disk_full(tmp_path: Path, tiny_disk: Path, fault_table: list[Row]) -> None:
    """The disk under the database fills up for 4 s mid-run (a 16 MB tmpfs), then frees."""
    url = f"sqlite:///{tiny_disk}/jobs.db"
    with Scenario(fault_table, "sqlite", "disk full", url, tmp_path) as s:
        s.enqueue(400)
        s.fleet.start()
        s.wait_for(lambda: s.done() >= 80, 60)
        filler = tiny_disk / "filler"
        fill(filler)
        time.sleep(4)
        filler.unlink()
        s.enqueue(40)
    s.check()


# -- rows that do not decode -------------------------------------------------------------
def corrupt(store: str, url: str, ids: list[str]) -> int:
    """Break rows by hand as another version might have written them: half get ``meta``
    = null, half an ``error`` of another shape. Only rows still queued; how many broke."""
    bad_error = '{"kind": "old-format", "text": 5}'
    broken = 0
    if store == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30) as db:
            for k, job_id in enumerate(ids):
                column, value = ("meta", b"null") if k % 2 == 0 else ("error", bad_error.encode())
                broken += db.execute(
                    f"UPDATE offload_jobs SET {column} = ? WHERE id = ? AND state = 'queued'",
                    (value, job_id),
                ).rowcount
    elif store == "postgres":
        import psycopg

        parts = urlsplit(url)
        schema = parse_qs(parts.query)["schema"][0]
        with psycopg.connect(parts._replace(query="").geturl(), autocommit=True) as db:
            for k, job_id in enumerate(ids):
                column, value = ("meta", "null") if k % 2 == 0 else ("error", bad_error)
                broken += db.execute(
                    f'UPDATE "{schema}".jobs SET {column} = %s::jsonb '
                    "WHERE id = %s AND state = 'queued'",
                    (value, job_id),
                ).rowcount
    else:
        import redis

        parts = urlsplit(url)
        prefix = parse_qs(parts.query)["prefix"][0]
        client = redis.Redis.from_url(parts._replace(query="").geturl())
        try:
            for k, job_id in enumerate(ids):
                queue = client.hget(f"{prefix}:g:{{{prefix}}}:dir", job_id)
                assert queue is not None
                key = f"{prefix}:q:{{{queue.decode()}}}:j:{job_id}"
                if client.hget(key, "state") != b"queued":
                    continue
                column, value = ("meta", "null") if k % 2 == 0 else ("error", bad_error)
                client.hset(key, column, value)
                broken += 1
        finally:
            client.close()
    return broken


@pytest.mark.parametrize("store", ALL_STORES)
def test_rows_that_do_not_decode(
    store: str, tmp_path: Path, request: pytest.FixtureRequest, fault_table: list[Row]
) -> None:
    """Six queued rows are broken by hand mid-run: they must end (dead-lettered), and the
    workers that claim them must keep running every other job."""
    url = shared_url(store, tmp_path, request)
    with Scenario(fault_table, store, "rows that do not decode", url, tmp_path) as s:
        ids = s.enqueue(300)
        s.fleet.start()
        s.wait_for(lambda: s.done() >= 30, 60)
        victims = ids[-6:]  # enqueued last, so claimed last: still queued
        broken = corrupt(store, url, victims)
        for job_id in victims:  # they need only end, not succeed
            s.must_end[job_id] = s.must_succeed.pop(job_id)
        s.notes.append(f"{broken} rows broken")
        s.enqueue(30)
    s.check()


# -- outcomes the store refuses -------------------------------------------------------------
@pytest.mark.parametrize("store", ALL_STORES)
def test_outcomes_the_store_refuses(
    store: str, tmp_path: Path, request: pytest.FixtureRequest, fault_table: list[Row]
) -> None:
    """Tasks whose error, progress or result holds a lone surrogate or a NUL, or that ask to
    retry in 1e14 s: each such job must end by itself, and every other job must still end."""
    url = shared_url(store, tmp_path, request)
    with Scenario(fault_table, store, "outcomes the store refuses", url, tmp_path) as s:
        s.enqueue(100)
        for kind in fault_app.BAD_OUTCOMES:
            s.enqueue_bad(kind)
            s.enqueue_bad(kind)
        s.enqueue(100)
        s.fleet.start()
        s.wait_for(lambda: s.done() >= 150, 60)
        s.enqueue(50)  # after the bad outcomes: the same workers must still acknowledge these
    s.check()


# -- SIGTERM ---------------------------------------------------------------------------------
@pytest.mark.parametrize("store", ALL_STORES)
def test_sigterm_during_claims(
    store: str, tmp_path: Path, request: pytest.FixtureRequest, fault_table: list[Row]
) -> None:
    """One idle worker stopped gracefully again and again, jobs arriving just before or just
    after the SIGTERM: a claim in flight, or a wake-up claim the store ran whose reply is
    still on its way or lost (the server stores reach the worker through a proxy with 0.1 s
    latency that sometimes cuts the reply, then heals at once).
    A graceful stop must never strand a job nor charge it a crash or an attempt."""
    url = shared_url(store, tmp_path, request)
    worker_url, proxy = url, None
    if store != "sqlite":
        port = urlsplit(url).port
        proxy = SilentProxy(port, latency_s=0.1).start()
        worker_url = url.replace(f":{port}/", f":{proxy.port}/", 1)
    rng = random.Random(2)
    try:
        with Scenario(fault_table, store, "SIGTERM during claims", url, tmp_path, lease_s=5.0,
                      max_crashes=2, workers=1, worker_url=worker_url) as s:  # fmt: skip
            s.fleet.start()
            for _ in range(12):
                s.wait_for(s.idle, 10)
                time.sleep(1.0)  # (re)started, back in its wait for a wake-up
                pick = rng.random()
                if pick < 0.4 and proxy is not None:
                    s.enqueue(5)  # the store runs the wake-up claim at once...
                    time.sleep(0.03)
                    proxy.partition()  # ...and its reply is lost on the way
                    s.fleet.signal_stop(0)
                    time.sleep(0.3)
                    proxy.heal()  # new connections work again: the stop can hand back
                elif pick < 0.8:
                    s.enqueue(5)  # wakes the idle worker: its claim starts now
                    time.sleep(rng.uniform(0.0, 0.25))
                    s.fleet.signal_stop(0)
                else:
                    s.fleet.signal_stop(0)  # stopping: its wait is being cancelled
                    time.sleep(rng.uniform(0.0, 0.02))
                    s.enqueue(5)
                s.fleet.await_stop(0)
            s.enqueue(20)
    finally:
        if proxy is not None:
            proxy.close()
    s.check(charged=True)


@pytest.mark.parametrize("store", ALL_STORES)
def test_sigterm_during_long_def_tasks(
    store: str, tmp_path: Path, request: pytest.FixtureRequest, fault_table: list[Row]
) -> None:
    """Workers stopped with a 0.5 s grace while their 3 s ``def`` tasks run in threads, the
    other worker idle enough to take what is handed back: no job may start elsewhere while
    its first copy still runs."""
    url = shared_url(store, tmp_path, request)
    with Scenario(fault_table, store, "SIGTERM in long def tasks", url, tmp_path,
                  long_s=3.0, grace_s=0.5, concurrency=6) as s:  # fmt: skip
        s.enqueue(8, fault_app.long_job)
        s.fleet.start()
        for round_ in range(3):
            s.wait_for(lambda: (s.counts() or {}).get("running", 0) >= 3, 30)
            time.sleep(0.5)
            s.fleet.terminate(round_ % 2)
    # a run cut short by the stop may run again later (at least once), never at the same time
    s.check(run_twice=False)
