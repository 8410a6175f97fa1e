"""Batches: progress, and a completion callback that runs once with every outcome."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from offload import InvalidArguments, JobState, Offload
from offload.backends.base import Backend, JobFilter, MarkNamesParams, Page, QueryParams
from offload.batches import CLOSED_MARK_TTL_S, OPEN_BATCHES, BatchService, batch_mark
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


def open_batches(app: Offload) -> list[str]:
    raw = app.backend.blocking.get_marks(MarkNamesParams(names=[OPEN_BATCHES])).get(OPEN_BATCHES)
    return [] if raw is None else list(__import__("json").loads(raw))


@pytest.fixture
def runner(app: Offload) -> Any:
    """One event loop for a test's leader ticks (a PostgreSQL pool belongs to one loop)."""
    with asyncio.Runner() as loop:
        yield loop
        loop.run(app.aclose())


def tick(runner: asyncio.Runner, service: BatchService, backend: Any) -> float | None:
    return runner.run(service.tick(backend, 0.0))


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


def test_a_batch_whose_members_cannot_be_stored_leaves_nothing_open(
    app: Offload, runner: asyncio.Runner
) -> None:
    @app.task
    def convert(name: str) -> str:
        return name

    with pytest.raises(InvalidArguments, match="missing a required argument"):
        app.batch([convert.s("a"), convert.s()])  # the second lacks its argument
    assert open_batches(app) == []
    assert app.backend.blocking.query(QueryParams()).jobs == []
    assert tick(runner, BatchService(), app.backend) is None  # nothing open: the leader idles


class CountingQueries:
    """The store, with each query's filter and limit written down (a spy, not a mock)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.queries: list[QueryParams] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def query(self, params: QueryParams) -> Page:
        self.queries.append(params)
        return await self.backend.query(params)


def test_progress_asks_only_whether_a_member_is_unfinished(
    app: Offload, runner: asyncio.Runner
) -> None:
    """A tick costs one indexed row per open batch; the members are read once, at the end."""

    @app.task
    def convert(name: str) -> str:
        return name

    @app.task
    def zip_all(outcomes: list[dict[str, Any]]) -> int:
        return len(outcomes)

    batch = app.batch([convert.s(str(i)) for i in range(5)], on_complete=zip_all.s())
    last, *others = batch.jobs()
    for job in others:
        job.cancel()
    service = BatchService()
    spy = CountingQueries(app.backend)
    assert tick(runner, service, spy) == 0.0 and tick(runner, service, spy) == 0.0
    assert [(q.limit, q.filter.batch) for q in spy.queries] == [(1, batch.id)] * 2
    assert all(JobState.SUCCEEDED not in q.filter.states for q in spy.queries)
    assert JobState.QUEUED in spy.queries[0].filter.states
    spy.queries.clear()
    last.cancel()
    assert tick(runner, service, spy) is None
    assert service.completed == 1 and len(callbacks(app)) == 1
    assert spy.queries[0].limit == 1
    assert len([q for q in spy.queries if q.limit > 1]) == 1  # the members, read once
    assert open_batches(app) == []


def test_a_closed_batch_mark_expires() -> None:
    """Every mark needs a lifetime: a batch's goes once the batch is closed."""
    now = [1_000_000.0]
    app = Offload("memory://", clock=lambda: now[0])

    @app.task
    def convert(name: str) -> str:
        return name

    batch = app.batch([convert.s("a")])
    batch.jobs()[0].cancel()
    with asyncio.Runner() as loop:
        assert tick(loop, BatchService(), app.backend) is None
    assert open_batches(app) == []
    now[0] += CLOSED_MARK_TTL_S + 1
    assert app.backend.blocking.get_marks(MarkNamesParams(names=[batch_mark(batch.id)])) == {}
