"""Batches: progress, and a completion callback that runs once with every outcome."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from offload import JobState, Offload
from offload.backends.base import JobFilter, QueryParams
from offload.batches import BatchService
from offload.errors import ConfigurationError
from worker_helpers import WorkerThread, wait_until


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Offload:
    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path}/batches.db"}.get(
        request.param
    ) or str(request.getfixturevalue(f"{request.param}_url"))
    application = Offload(url, default_retries=0)
    yield application
    application.close()


def callbacks(app: Offload) -> list[Any]:
    return app.backend.blocking.query(QueryParams(filter=JobFilter(task="zip_all"))).jobs


def test_the_callback_runs_once_after_every_member_with_their_outcomes(app: Offload) -> None:
    received: list[list[dict[str, Any]]] = []

    @app.task
    def convert(name: str) -> str:
        if name == "broken.docx":
            raise ValueError("not a document")
        return name.replace(".docx", ".pdf")

    @app.task
    def zip_all(outcomes: list[dict[str, Any]], archive: str) -> str:
        received.append(outcomes)
        return archive

    names = ["a.docx", "broken.docx", "c.docx"]
    batch = app.batch([convert.s(n) for n in names], on_complete=zip_all.s(archive="upload-42.zip"))
    assert batch.status().total == 3
    with WorkerThread(app):
        wait_until(lambda: len(received) == 1, what="the callback")
        wait_until(lambda: batch.status().finished)
    status = batch.status()
    assert status.done == 3 and status.counts == {"succeeded": 2, "dead": 1}
    (outcomes,) = received
    assert [o["state"] for o in outcomes] == ["succeeded", "dead", "succeeded"]
    assert [o["result"] for o in outcomes] == ["a.pdf", None, "c.pdf"]
    assert "not a document" in outcomes[1]["error"]
    assert [o["id"] for o in outcomes] == [j.id for j in batch.jobs()]
    (callback,) = callbacks(app)
    assert app.job(callback.id).result(timeout=10) == "upload-42.zip"


def test_leaders_that_repeat_the_completion_make_one_callback(app: Offload) -> None:
    @app.task
    def convert(name: str) -> str:
        return name

    @app.task
    def zip_all(outcomes: list[dict[str, Any]]) -> int:
        return len(outcomes)

    batch = app.batch([convert.s("a"), convert.s("b")], on_complete=zip_all.s())
    for job in batch.jobs():  # a person cancels them: cancelled members count as ended
        job.cancel()
    leaders = [BatchService(), BatchService()]

    async def tick() -> None:
        for _ in range(3):
            await asyncio.gather(*(s.tick(app.backend, 0.0) for s in leaders))

    with asyncio.Runner() as runner:
        runner.run(tick())
        assert len(callbacks(app)) == 1
        assert sum(s.completed for s in leaders) >= 1
        assert batch.status().counts == {JobState.CANCELLED.value: 2}
        runner.run(app.aclose())


def test_a_batch_needs_jobs_of_this_app(app: Offload) -> None:
    other = Offload("memory://")

    @other.task
    def foreign() -> None: ...

    with pytest.raises(ConfigurationError, match="at least one job"):
        app.batch([])
    with pytest.raises(ConfigurationError, match="another Offload app"):
        app.batch([foreign.s()])
