"""Live events reach workers: a cancel stops a running job at once (not at the next
heartbeat), a paused queue is left alone, and the registry lists live workers.

Leases here are long (300 s, so the first heartbeat is 100 s away): anything the
worker learns sooner came through the live events, on every store and every pool.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import proc_app
from offload import JobState, Offload, current_job
from worker_helpers import WorkerThread, wait_until

LONG_LEASE_S = 300.0
#: Far below the first heartbeat (LONG_LEASE_S / 3): only an event can explain a stop in time.
SOON_S = 30.0


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Offload]:
    url = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path}/jobs.db",
    }.get(request.param) or request.getfixturevalue(f"{request.param}_url")
    application = Offload(url, default_retries=0, lease_s=LONG_LEASE_S)
    yield application
    application.close()


@pytest.mark.parametrize("pool", ["async", "thread"])
def test_cancel_reaches_a_running_job_long_before_its_heartbeat(app: Offload, pool: str) -> None:
    stopped = threading.Event()

    @app.task
    async def slow_async() -> None:
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:
            stopped.set()
            raise

    @app.task
    def slow_sync() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if current_job().cancelled:
                stopped.set()
                return
            time.sleep(0.01)

    task = slow_async if pool == "async" else slow_sync
    job = task.enqueue()
    with WorkerThread(app, pool=pool, concurrency=2):
        wait_until(lambda: job.refresh().state is JobState.RUNNING, what="the job to start")
        assert app.admin.cancel(job.id).state is JobState.CANCELLED
        assert stopped.wait(SOON_S), "the running job was not told of its cancel"
    assert app.admin.get(job.id).state is JobState.CANCELLED


def test_a_paused_queue_is_not_claimed_until_resumed(app: Offload) -> None:
    @app.task(queue="docs")
    def convert(name: str) -> str:
        return name

    @app.task
    def other() -> str:
        return "ok"

    with WorkerThread(app, queues=["default", "docs"], concurrency=2):
        assert app.admin.pause("docs")
        time.sleep(0.5)  # the pause is pushed; a worker has it well within this
        held = convert.enqueue("a.docx")
        # work on the other queue flows, and completes after the held job was stored
        assert other.enqueue().result(timeout=SOON_S) == "ok"
        assert held.refresh().state is JobState.QUEUED
        assert app.admin.resume("docs")
        assert held.result(timeout=SOON_S) == "a.docx"


def test_the_registry_lists_a_live_worker_with_its_jobs(app: Offload) -> None:
    release = threading.Event()

    @app.task
    def hold() -> None:
        release.wait(60)

    job = hold.enqueue()
    runner = WorkerThread(app, queues=["default"], concurrency=3, pool="thread")
    with runner:
        wait_until(lambda: job.refresh().state is JobState.RUNNING, what="the job to start")
        (info,) = app.admin.workers()
        assert info.id == runner.worker.name
        assert (info.pid, info.queues, info.concurrency) == (os.getpid(), ["default"], 3)
        release.set()
        job.result(timeout=SOON_S)
    assert app.admin.workers() == []  # a graceful stop leaves the registry at once


@pytest.fixture
def proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Offload]:
    url = f"sqlite:///{tmp_path}/proc.db"
    monkeypatch.setenv("OFFLOAD_URL", url)  # the spawned children open the same store
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(__file__))
    proc_app.app._backend = None
    proc_app.app.url = url
    proc_app.app.lease_s = LONG_LEASE_S
    yield proc_app.app
    proc_app.app.lease_s = 30.0
    proc_app.app.close()


def test_cancel_kills_a_process_pool_job_long_before_its_heartbeat(proc: Offload) -> None:
    job = proc_app.forever.enqueue()
    with WorkerThread(proc, pool="process", app_spec="proc_app:app", concurrency=1):
        wait_until(lambda: job.refresh().state is JobState.RUNNING, what="the job to start")
        assert proc.admin.cancel(job.id).state is JobState.CANCELLED
        # one slot: this runs only once the cancelled job's child was killed
        assert proc_app.square.enqueue(4).result(timeout=SOON_S) == 16


def test_a_worker_started_while_a_queue_is_paused_leaves_it_alone(app: Offload) -> None:
    @app.task(queue="docs")
    def convert(name: str) -> str:
        return name

    @app.task
    def other() -> str:
        return "ok"

    assert app.admin.pause("docs")
    held = convert.enqueue("a.docx")
    with WorkerThread(app, queues=["default", "docs"], concurrency=2):
        assert other.enqueue().result(timeout=SOON_S) == "ok"
        assert held.refresh().state is JobState.QUEUED
    burst = WorkerThread(app, queues=["docs"], burst=True).__enter__()
    assert burst.join(timeout_s=SOON_S).started == 0  # nothing ready: a burst run ends
    assert held.refresh().state is JobState.QUEUED
