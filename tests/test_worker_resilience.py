"""The worker's loops against surprises: unreadable rows, claims that raise, short leases,
stale "lost" reports, unreachable stores, and micro-batches that must not hoard jobs."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from offload import JobState, Offload
from offload.backends import open_backend
from offload.backends.base import Backend, ClaimParams, JobFilter, QueryParams, ReapParams
from offload.records import JobRecord
from offload.worker import Worker, outcomes
from offload.worker.state import Running
from worker_helpers import WorkerThread, wait_until

TESTS_DIR = Path(__file__).resolve().parent


def store_url(store: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path}/jobs.db",
    }.get(store) or request.getfixturevalue(f"{store}_url")


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Offload]:
    application = Offload(store_url(request.param, request, tmp_path), default_retries=0)
    yield application
    application.close()


# -- defect 3: rows that do not decode, claims that raise --------------------
def test_an_unreadable_job_is_dead_lettered_and_never_runs() -> None:
    app = Offload("memory://", default_retries=2)
    ran: list[int] = []

    @app.task
    def work(n: int) -> int:
        ran.append(n)
        return n

    broken = work.enqueue(1)
    fine = work.enqueue(2)
    store: Any = app.backend.store  # type: ignore[attr-defined]
    record = store._jobs[broken.id]  # as a store reports a row it could not decode
    store._jobs[broken.id] = replace(record, unreadable="meta: null is not an object")
    WorkerThread(app, burst=True).__enter__().join()
    assert fine.result(timeout=5) == 2
    final = broken.refresh().record
    assert final.state is JobState.DEAD and final.crashes == 0
    assert final.error is not None and final.error.type == "UnreadableJob"
    assert "meta: null is not an object" in final.error.message
    assert ran == [2]


@pytest.mark.parametrize(
    "sql",
    ["UPDATE offload_jobs SET meta = 'null' WHERE id = ?",
     "UPDATE offload_jobs SET error = '{\"msg\": 1}' WHERE id = ?"],
)  # fmt: skip
def test_a_row_that_does_not_decode_is_dead_lettered_on_sqlite(sql: str, tmp_path: Path) -> None:
    """Written by another version or by hand: the worker that claims it lives on."""
    app = Offload(f"sqlite:///{tmp_path}/jobs.db", default_retries=2)

    @app.task
    def work(n: int) -> int:
        return n

    try:
        broken = work.enqueue(1)
        fine = work.enqueue(2)
        conn = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
        try:
            conn.execute(sql, (broken.id,))
        finally:
            conn.close()
        with WorkerThread(app) as worker:
            assert fine.result(timeout=30) == 2
            wait_until(lambda: broken.refresh().state is JobState.DEAD, what="dead-lettered")
            after = work.enqueue(3)  # the worker is still there
            assert after.result(timeout=30) == 3
        assert worker.error is None
        final = broken.refresh().record
        assert final.crashes == 0 and final.error is not None
        assert final.error.type == "UnreadableJob"
    finally:
        app.close()


class SurprisingStore:
    """A real store whose first claims raise something that is not a BackendError."""

    def __init__(self, inner: Backend, surprises: int) -> None:
        self._inner = inner
        self.surprises = surprises

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def claim(self, params: ClaimParams) -> list[JobRecord]:
        if self.surprises > 0:
            self.surprises -= 1
            raise KeyError("a row of another shape")
        return await self._inner.claim(params)


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_a_claim_raising_a_surprise_does_not_end_the_worker(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = store_url(store, request, tmp_path)
    surprising = SurprisingStore(open_backend(url), surprises=2)
    app = Offload(url, backend=surprising)  # type: ignore[arg-type]

    @app.task
    def echo(n: int) -> int:
        return n

    try:
        job = echo.enqueue(7)
        with WorkerThread(app) as worker:
            assert job.result(timeout=30) == 7
        assert worker.error is None and surprising.surprises == 0
    finally:
        app.close()


# -- defect 6: a task's own short lease --------------------------------------
def test_a_short_task_lease_is_renewed_before_it_expires(app: Offload) -> None:
    """An idle worker planned its heartbeat for the app's 30 s lease; a job with a 1 s
    lease arrives: it must be renewed in time, never reaped and run twice."""
    app.lease_s = 30.0
    starts: list[int] = []

    @app.task(lease_s=1.0)
    def slow(n: int) -> int:
        starts.append(n)
        time.sleep(3.0)  # three leases long
        return n

    with WorkerThread(app, maintenance_interval_s=0.2):
        time.sleep(0.3)  # idle: the heartbeat sleeps for a 30 s lease
        job = slow.enqueue(1)
        assert job.result(timeout=30) == 1
    record = job.refresh().record
    assert starts == [1] and record.crashes == 0 and record.attempt == 1


# -- defect 21: "lost" is about the delivery that was sent -------------------
def test_a_lost_report_for_an_older_delivery_spares_the_newer_claim(app: Offload) -> None:
    @app.task
    def noop() -> None: ...

    job = noop.enqueue()

    async def scenario() -> bool:
        backend = app.backend
        worker = Worker(app)
        params = ClaimParams(queues=worker.queues, limit=1, worker=worker.name, lease_s=0.2)
        [first] = await backend.claim(params)
        await asyncio.sleep(0.5)
        await backend.reap_expired(ReapParams(max_crashes=5))
        [second] = await backend.claim(replace(params, lease_s=30.0))
        assert second.id == first.id == job.id and second.delivery != first.delivery
        # This worker holds the newer claim, and the older one's outcome is not yet stored.
        newer = asyncio.create_task(asyncio.sleep(30))
        worker._running[job.id] = Running(job=second, cancelled=threading.Event(), task=newer)
        worker.acks.pending[job.id] = outcomes.succeeded(first, b"null")
        worker.acks.pending_jobs[job.id] = first
        await worker.leases.heartbeat()  # the old delivery's lease is lost, not the new one
        await asyncio.sleep(0)
        spared = not newer.done()
        newer.cancel()
        await backend.close()
        return spared

    assert asyncio.run(scenario())  # (PostgreSQL reports no loss here: it applies elsewhere)


# -- defect 20: unreachable stores -------------------------------------------
@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "postgresql://u:secret@127.0.0.1:1/x"])
def test_a_burst_worker_exits_with_the_error_when_the_store_is_unreachable(url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OFFLOAD_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "offload", "worker", "cli_app:app", "--burst", "--url", url,
         "--log-level", "ERROR"],
        check=False, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("offload: error: cannot connect to"), done.stderr
    assert "secret" not in done.stderr


def test_a_long_running_worker_logs_an_outage_once(caplog: pytest.LogCaptureFixture) -> None:
    app = Offload("redis://127.0.0.1:1/0")
    caplog.set_level(logging.INFO, logger="offload.worker")
    with WorkerThread(app, maintenance_interval_s=0.2):
        wait_until(
            lambda: sum("claim" in r.getMessage() for r in caplog.records) >= 1,
            what="the outage reported",
        )
        time.sleep(2.0)  # several retries (0.2, 0.4, 0.8 s ...)
    claims = [r for r in caplog.records if "cannot claim" in r.getMessage()]
    assert len([r for r in claims if r.levelno >= logging.ERROR]) == 1


# -- defect 12: a forming micro-batch takes only its own task's jobs --------
def test_a_forming_micro_batch_claims_no_other_tasks_jobs(app: Offload) -> None:
    @app.task(batch_size=50, batch_wait_s=2.0)
    def summed(numbers: list[int]) -> list[int]:
        return numbers

    @app.task
    def plain(n: int) -> int:
        time.sleep(0.05)
        return n

    batched = summed.enqueue(1)
    time.sleep(0.01)  # the batched job is the oldest: claimed first
    others = [plain.enqueue(n) for n in range(20)]
    seen: list[int] = []
    with WorkerThread(app, concurrency=1):
        wait_until(lambda: batched.refresh().state is JobState.RUNNING, what="batch forming")
        for _ in range(10):  # while it forms, sample what this worker holds
            page = app.backend.blocking.query(
                QueryParams(filter=JobFilter(states=[JobState.RUNNING], task="plain"), limit=50)
            )
            seen.append(len(page.jobs))
            time.sleep(0.05)
        assert batched.result(timeout=30) == 1
        for n, job in enumerate(others):
            assert job.result(timeout=30) == n
    assert max(seen) <= 1, seen


@pytest.mark.parametrize(
    ("store", "column", "value"),
    [("sqlite", "priority", "'x'"), ("sqlite", "lease_s", "'abc'"),
     ("sqlite", "attempt", "'two'"), ("postgres", "lease_s", "'NaN'"),
     ("postgres", "lease_s", "'Infinity'"), ("postgres", "run_at", "'infinity'")],
)  # fmt: skip
def test_a_row_of_the_wrong_type_fails_alone(
    store: str, column: str, value: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """One hand-written column (text where a number belongs, NaN, infinity) must not stop
    the claim that takes it: the jobs claimed with it run, charged nothing."""
    if store == "sqlite":
        url = f"sqlite:///{tmp_path}/jobs.db"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    app = Offload(url, default_retries=2, lease_s=3.0)

    @app.task
    def work(n: int) -> int:
        return n

    try:
        broken = work.enqueue(0)
        fine = [work.enqueue(n) for n in range(1, 7)]
        if store == "sqlite":
            conn = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
            try:
                conn.execute(f"UPDATE offload_jobs SET {column} = {value} WHERE id = ?",
                             (broken.id,))  # fmt: skip
            finally:
                conn.close()
        else:
            import psycopg

            backend: Any = app.backend
            sql = f"UPDATE {backend.st.schema}.jobs SET {column} = {value}"
            if column == "run_at":
                sql = f"UPDATE {backend.st.schema}.jobs SET {column} = {value}::timestamptz"
            with psycopg.connect(backend.config.conninfo, autocommit=True) as conn_pg:
                conn_pg.execute(sql + " WHERE id = %s", (broken.id,))
        with WorkerThread(app, concurrency=4, burst=True) as worker:
            worker.join()
        assert worker.error is None
        for job in fine:
            record = job.refresh().record
            assert record.state is JobState.SUCCEEDED and record.crashes == 0, record
        final = broken.refresh().record
        assert final.crashes == 0, final
        assert final.state in (JobState.DEAD, JobState.SUCCEEDED, JobState.QUEUED), final
    finally:
        app.close()


# -- a stop while the store is slow to answer the worker's first calls ------
def test_a_stop_during_the_workers_start_is_not_held_by_a_silent_store() -> None:
    """A worker whose first registry write hangs (a store cut off by a partition, a lock
    left by a lost client) still stops at once when told to."""
    app = Offload("memory://")
    hanging = threading.Event()

    async def never_answers(params: Any) -> None:
        hanging.set()
        await asyncio.sleep(3600)

    app.backend.beat_worker = never_answers  # type: ignore[method-assign]
    worker = WorkerThread(app)
    with worker:
        assert hanging.wait(10), "the worker never started"
        worker.request_stop()
        stats = worker.join(timeout_s=10)
    assert stats.started == 0
