"""Batches: progress, and a completion callback that runs once with every outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from offload import InvalidArguments, JobState, Offload
from offload.backends.base import JobFilter, QueryParams
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


def test_members_cancelled_by_a_person_complete_the_batch_with_one_callback(
    app: Offload,
) -> None:
    """The store counts members down in the step that ends them, whatever ends them: the
    callback is stored by the last cancel itself, once, with no leader involved."""

    @app.task
    def convert(name: str) -> str:
        return name

    @app.task
    def zip_all(outcomes: list[dict[str, Any]]) -> int:
        return len(outcomes)

    batch = app.batch([convert.s("a"), convert.s("b")], on_complete=zip_all.s())
    first, second = batch.jobs()
    first.cancel()
    assert callbacks(app) == []
    second.cancel()
    second.cancel()  # already ended: counts nothing twice
    (callback,) = callbacks(app)
    assert batch.status().counts[JobState.CANCELLED.value] == 2
    assert app.admin.batches() == []  # no batch is open any more
    with WorkerThread(app):
        assert app.job(callback.id).result(timeout=30) == 2


def test_a_batch_needs_jobs_of_this_app(app: Offload) -> None:
    other = Offload("memory://")

    @other.task
    def foreign() -> None: ...

    with pytest.raises(ConfigurationError, match="at least one job"):
        app.batch([])
    with pytest.raises(ConfigurationError, match="another Offload app"):
        app.batch([foreign.s()])


def open_batches(app: Offload) -> list[str]:
    return [b.id for b in app.admin.batches()]


def test_a_member_with_a_unique_key_is_refused_before_anything_is_stored(app: Offload) -> None:
    """A held key would return another job in the member's place: the batch would never
    complete while its status said finished. Keys are refused in batches, at the call."""

    @app.task
    def convert(name: str) -> str:
        return name

    @app.task
    def zip_all(outcomes: list[dict[str, Any]]) -> int:
        return len(outcomes)

    holder = convert.options(key="report").enqueue("held")
    with pytest.raises(ConfigurationError, match="unique key"):
        app.batch([convert.options(key="report").s("a"), convert.s("b")], on_complete=zip_all.s())
    assert [j.id for j in app.backend.blocking.query(QueryParams()).jobs] == [holder.id]
    assert open_batches(app) == []


def test_a_batch_whose_members_cannot_be_stored_leaves_nothing_open(app: Offload) -> None:
    @app.task
    def convert(name: str) -> str:
        return name

    with pytest.raises(InvalidArguments, match="missing a required argument"):
        app.batch([convert.s("a"), convert.s()])  # the second lacks its argument
    assert open_batches(app) == []
    assert app.backend.blocking.query(QueryParams()).jobs == []


def test_an_open_batch_is_listed_with_its_progress(app: Offload) -> None:
    @app.task
    def convert(name: str) -> str:
        return name

    batch = app.batch([convert.s(str(i)) for i in range(5)])
    batch.jobs()[0].cancel()
    (listed,) = app.admin.batches()
    assert (listed.id, listed.total, listed.done) == (batch.id, 5, 1)
    assert not listed.finished
