"""``def`` tasks left running in their threads: a timeout or a stop cannot kill a thread, so
such a thread must neither hold up later jobs (defect 8) nor be run twice at once after a
graceful stop (defect 7)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import worker_fault_app
from offload import JobFailed, JobState, Offload
from test_worker_isolation import fault_env, start_worker
from worker_helpers import WorkerThread, wait_until

DEADLINE_S = 120.0  # guards against a hang; never a timing assertion


@pytest.fixture(params=["memory", "sqlite"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Offload]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/jobs.db"
    application = Offload(url, default_retries=0)
    yield application
    application.close()


def test_timed_out_threads_do_not_hold_up_later_jobs(app: Offload) -> None:
    release = __import__("threading").Event()

    @app.task(timeout_s=0.3)
    def stuck() -> None:
        release.wait(20)  # ignores its cancellation, as blocking code does

    @app.task(timeout_s=5.0)
    def quick(n: int) -> int:
        return n

    stuck_jobs = [stuck.enqueue() for _ in range(2)]
    try:
        with WorkerThread(app, concurrency=2):
            for job in stuck_jobs:
                with pytest.raises(JobFailed, match="TimeoutError"):
                    job.result(timeout=30)
            # both threads are still stuck: later jobs must run all the same
            quick_jobs = [quick.enqueue(n) for n in range(6)]
            for n, job in enumerate(quick_jobs):
                assert job.result(timeout=30) == n
    finally:
        release.set()


def executions(logs: Path) -> list[tuple[str, str, int, float]]:
    rows = []
    for log in logs.iterdir():
        for line in log.read_text().splitlines():
            event, name, pid, at = line.split()
            rows.append((event, name, int(pid), float(at)))
    return sorted(rows, key=lambda row: row[3])


def test_a_stopped_worker_never_hands_back_a_thread_still_running(tmp_path: Path) -> None:
    """SIGTERM with a short grace while a ``def`` task sleeps on: the worker exits soon
    after the grace, and the job runs again only once that first copy is gone."""
    url = f"sqlite:///{tmp_path}/jobs.db"
    logs = tmp_path / "executions"
    logs.mkdir()
    app = worker_fault_app.app
    app._backend = None
    app.url = url
    env = fault_env(url, logs)
    try:
        job = worker_fault_app.long_sleeper.enqueue(30.0)
        first = start_worker(env, "--grace", "0.5")
        wait_until(lambda: any(e[0] == "start" for e in executions(logs)), DEADLINE_S, "start")
        second = start_worker(env)  # ready to take whatever the first hands back
        try:
            stopped_at = time.time()
            first.send_signal(signal.SIGTERM)
            first.wait(timeout=DEADLINE_S)
            exited_at = time.time()
            wait_until(
                lambda: sum(e[0] == "start" for e in executions(logs)) >= 2, DEADLINE_S,
                "the job run again",
            )  # fmt: skip
        finally:
            second.send_signal(signal.SIGKILL)
            second.wait(timeout=60)
        starts = [e for e in executions(logs) if e[0] == "start"]
        assert starts[0][2] == first.pid and starts[1][2] != first.pid  # (a child, maybe)
        # the second copy started only after the first process (and its thread) was gone
        assert starts[1][3] >= exited_at
        assert not any(e[0] == "end" and e[2] == first.pid for e in executions(logs))
        # bounded: the first worker did not wait for its 30 s thread
        assert exited_at - stopped_at < 20.0
        record = job.refresh().record
        assert record.state in (JobState.RUNNING, JobState.QUEUED, JobState.SCHEDULED)
        assert record.crashes == 0  # a graceful stop charges the job nothing
    finally:
        app.close()
        app._backend = None
