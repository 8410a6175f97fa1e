"""Follow-ups from the task API: a job's end stores the job it asked for, however it ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from offload import JobState, Offload
from offload.errors import ConfigurationError
from worker_helpers import WorkerThread


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Offload]:
    url = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path}/jobs.db",
    }.get(request.param) or request.getfixturevalue(f"{request.param}_url")
    application = Offload(url, default_retries=0)
    yield application
    application.close()


def test_each_end_stores_its_own_follow_up_with_the_parent_id(app: Offload) -> None:
    told: list[tuple[str, str, str]] = []

    @app.task
    def convert(name: str) -> str:
        if name == "broken":
            raise ValueError("not a document")
        return name

    @app.task(queue="notify")
    def tell(job_id: str, what: str) -> None:
        told.append((job_id, what, app.admin.get(job_id).state.value))

    def with_ends(name: str) -> object:
        return convert.options(
            owner="alice",
            on_success=tell.s(what="done"),
            on_failure=tell.s(what="failed"),
            on_cancel=tell.s(what="cancelled"),
        ).enqueue(name)

    good, bad = with_ends("fine"), with_ends("broken")
    cancelled = with_ends("never")
    app.admin.cancel(cancelled.id)  # type: ignore[attr-defined]
    with WorkerThread(app, queues=["default", "notify"], burst=True) as worker:
        worker.join()
    assert sorted(told) == sorted([
        (good.id, "done", "succeeded"),  # type: ignore[attr-defined]
        (bad.id, "failed", "dead"),  # type: ignore[attr-defined]
        (cancelled.id, "cancelled", "cancelled"),  # type: ignore[attr-defined]
    ])  # fmt: skip
    notes = app.admin.jobs(task="tell").jobs
    assert {j.owner for j in notes} == {"alice"}  # a follow-up works for its parent's owner
    assert app.admin.count(task="tell") == 3  # one each, the others were never stored


def test_follow_up_arguments_are_checked_at_the_call(app: Offload) -> None:
    @app.task
    def convert(name: str) -> str:
        return name

    @app.task
    def tell(job_id: str, times: int) -> None: ...

    with pytest.raises(Exception, match="times"):
        convert.options(on_failure=tell.s(times="three")).enqueue("a")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="signature"):
        convert.options(on_failure=tell).enqueue("a")  # type: ignore[arg-type]
    assert app.admin.count() == 0
    job = convert.options(on_cancel=tell.s(times=2)).enqueue("a")
    app.admin.cancel(job.id)
    (note,) = app.admin.jobs(task="tell").jobs
    assert note.state is JobState.QUEUED
