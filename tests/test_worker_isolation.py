"""Defect 22: a job that never misbehaved must not die of a neighbour's crashes.

Real worker processes, restarted by a supervisor loop like systemd or Kubernetes would,
run innocent jobs beside a job that calls ``os._exit``. A job claimed after it crashed a
worker runs in a child process of its own (the CLI worker knows its app's spec), so the
poison job ends dead of its own failures and every innocent job succeeds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import worker_fault_app
from offload import JobState, Offload
from offload.backends.base import ClaimParams, JobFilter, QueryParams, ReapParams
from worker_helpers import WorkerThread

TESTS_DIR = Path(__file__).resolve().parent
DEADLINE_S = 180.0  # guards against a hang; never a timing assertion
INNOCENTS = 6


def fault_env(url: str, logs: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OFFLOAD_URL"}
    env.update(OFFLOAD_URL=url, FAULT_LOG_DIR=str(logs))
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")])
    return env


def start_worker(env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "offload", "worker", "worker_fault_app:app", "-c", "8",
         "--log-level", "ERROR", *extra],
        env=env,
    )  # fmt: skip


@pytest.mark.parametrize("store", ["sqlite", "postgres", "redis"])
def test_innocent_jobs_never_die_with_a_poison_job(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path}/jobs.db"
        if store == "sqlite"
        else request.getfixturevalue(f"{store}_url")
    )
    logs = tmp_path / "executions"
    logs.mkdir()
    app = worker_fault_app.app
    app._backend = None  # one module-level app, pointed at each store in turn
    app.url = url
    try:
        innocents = [worker_fault_app.innocent.enqueue(n) for n in range(INNOCENTS)]
        poison = worker_fault_app.poison.enqueue()
        env = fault_env(url, logs)
        restarts = 0
        worker = start_worker(env)
        deadline = time.monotonic() + DEADLINE_S
        try:
            while time.monotonic() < deadline:
                states = [job.refresh().state for job in [*innocents, poison]]
                if all(state.is_terminal for state in states):
                    break
                if worker.poll() is not None:  # the supervisor restarts a dead worker
                    restarts += 1
                    worker = start_worker(env)
                time.sleep(0.2)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
        page = app.backend.blocking.query(QueryParams(filter=JobFilter(), limit=100))
        final = {job.id: job for job in page.jobs}
        for job in innocents:
            record = final[job.id]
            assert record.state is JobState.SUCCEEDED, (record.state, record.crashes, record.error)
        assert final[poison.id].state is JobState.DEAD
        assert restarts >= 1  # the poison job did take a worker down once
    finally:
        app.close()
        app._backend = None


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_without_an_app_spec_a_suspect_job_runs_alone(store: str, tmp_path: Path) -> None:
    """A worker that cannot start a child for it runs a suspect with nothing beside it."""
    url = "memory://" if store == "memory" else f"sqlite:///{tmp_path}/jobs.db"
    app = Offload(url, default_retries=0)
    lock = threading.Lock()
    active: list[str] = []
    beside_suspect: list[list[str]] = []

    @app.task
    def normal(n: int) -> int:
        with lock:
            active.append(f"normal-{n}")
        time.sleep(0.3)
        with lock:
            active.remove(f"normal-{n}")
        return n

    @app.task
    def suspect() -> str:
        with lock:
            beside_suspect.append(list(active))
        time.sleep(0.3)
        with lock:
            beside_suspect.append(list(active))
        return "ok"

    try:
        job = suspect.enqueue()
        blocking = app.backend.blocking  # a worker took it, then died: one crash
        blocking.claim(ClaimParams(queues=[app.default_queue], limit=1, worker="gone", lease_s=0.1))
        time.sleep(0.3)
        blocking.reap_expired(ReapParams(max_crashes=3))
        assert job.refresh().record.crashes == 1
        normals = [normal.enqueue(n) for n in range(8)]
        with WorkerThread(app, concurrency=4):
            assert job.result(timeout=30) == "ok"
            for n, other in enumerate(normals):
                assert other.result(timeout=30) == n
        assert beside_suspect == [[], []]
    finally:
        app.close()


def test_a_task_process_does_not_outlive_its_killed_worker(tmp_path: Path) -> None:
    """SIGKILL the worker: the child running a task exits too, so the job (run again once
    its lease expires) never runs beside an orphaned first copy."""
    url = f"sqlite:///{tmp_path}/jobs.db"
    logs = tmp_path / "executions"
    logs.mkdir()
    app = worker_fault_app.app
    app._backend = None
    app.url = url
    try:
        worker_fault_app.long_sleeper.enqueue(600.0)
        worker = start_worker(fault_env(url, logs), "--pool", "process")
        try:
            deadline = time.monotonic() + DEADLINE_S
            while not any(logs.iterdir()) and time.monotonic() < deadline:
                time.sleep(0.05)
            [log] = list(logs.iterdir())
            child_pid = int(log.read_text().split()[2])
            assert child_pid != worker.pid
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=60)
        gone_by = time.monotonic() + 60.0  # far less than the task's 600 s sleep
        while time.monotonic() < gone_by and _alive(child_pid):
            time.sleep(0.1)
        orphaned = _alive(child_pid)
        if orphaned:
            os.kill(child_pid, signal.SIGKILL)
        assert not orphaned
    finally:
        app.close()
        app._backend = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone for our purpose
        return stat.read().split()[2] != "Z"
