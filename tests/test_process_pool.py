"""The process pool: hard timeouts, cancellation and a task that kills its process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import proc_app
from offload import JobFailed, JobState
from worker_helpers import WorkerThread, wait_until


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    url = f"sqlite:///{tmp_path}/proc.db"
    monkeypatch.setenv("OFFLOAD_URL", url)  # the spawned children open the same store
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(__file__))
    proc_app.app._backend = None
    proc_app.app._files = None
    proc_app.app.url = url
    yield proc_app.app
    proc_app.app.close()


def test_results_progress_and_async_tasks(app: object) -> None:
    a = proc_app.square.enqueue(7)
    b = proc_app.async_square.enqueue(5)
    WorkerThread(proc_app.app, pool="process", app_spec="proc_app:app", concurrency=2,
                 burst=True).__enter__().join()  # fmt: skip
    assert a.result(timeout=5) == 49
    assert b.result(timeout=5) == 25


def test_a_task_in_a_child_process_attaches_files_to_its_job(app: object) -> None:
    job = proc_app.attach_note.enqueue("from the child")
    WorkerThread(proc_app.app, pool="process", app_spec="proc_app:app",
                 burst=True).__enter__().join()  # fmt: skip
    job.result(timeout=5)
    (note,) = proc_app.app.admin.files(job.id)
    handle, _ = proc_app.app.files.open(job.id, note.name)
    with handle:
        assert handle.read() == b"from the child"


def test_hard_timeout_kills_a_stuck_sync_task(app: object) -> None:
    stuck = proc_app.sleepy.enqueue(3600)
    fine = proc_app.square.enqueue(3)
    WorkerThread(proc_app.app, pool="process", app_spec="proc_app:app", concurrency=1,
                 burst=True).__enter__().join()  # fmt: skip
    with pytest.raises(JobFailed, match="TimeoutError"):
        stuck.result(timeout=5)
    assert fine.result(timeout=5) == 9  # the pool replaced the killed child


def test_cancel_kills_the_process(app: object) -> None:
    proc_app.app.lease_s = 0.6
    try:
        job = proc_app.forever.enqueue()
        with WorkerThread(proc_app.app, pool="process", app_spec="proc_app:app", concurrency=1):
            wait_until(lambda: job.state is JobState.RUNNING)
            assert job.cancel()
            # one slot: this can only run once the stuck child was killed
            assert proc_app.square.enqueue(4).result(timeout=30) == 16
        assert job.state is JobState.CANCELLED
    finally:
        proc_app.app.lease_s = 30.0


def test_a_task_that_kills_its_process_fails_without_taking_the_worker_down(app: object) -> None:
    doomed = proc_app.die.enqueue()
    fine = proc_app.square.enqueue(2)
    runner = WorkerThread(proc_app.app, pool="process", app_spec="proc_app:app", concurrency=1,
                          burst=True).__enter__()  # fmt: skip
    stats = runner.join()
    with pytest.raises(JobFailed, match="exited with code 3"):
        doomed.result(timeout=5)
    assert doomed.record.attempt == 2  # retried once, then dead
    assert fine.result(timeout=5) == 4
    assert stats.dead == 1
