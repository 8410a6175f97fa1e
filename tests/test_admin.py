"""The management API (``app.admin``, ``app.admin.aio``) on every store."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from offload import JobState, Offload
from offload.errors import CountChanged, InvalidQuery, JobNotFound
from offload.records import AttemptOutcome, EventKind, JobEvent
from worker_helpers import WorkerThread


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Offload:
    url = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path}/jobs.db",
    }.get(request.param) or request.getfixturevalue(f"{request.param}_url")
    application = Offload(url, default_retries=0)
    yield application
    application.close()


def _tasks(app: Offload) -> tuple[object, object]:
    @app.task(queue="docs")
    def convert(name: str) -> str:
        return name.upper()

    @app.task
    def boom() -> None:
        raise ValueError("no luck")

    return convert, boom


def test_get_list_search_and_owner_isolation(app: Offload) -> None:
    convert, _ = _tasks(app)
    mine = convert.options(owner="alice").enqueue("Quarterly-Report.docx")  # type: ignore[attr-defined]
    theirs = convert.options(owner="bob").enqueue("minutes.odt")  # type: ignore[attr-defined]
    assert app.admin.get(mine.id).id == mine.id
    assert app.admin.get(mine.id, owner="alice").owner == "alice"
    with pytest.raises(JobNotFound):
        app.admin.get(theirs.id, owner="alice")  # another owner's job is not found
    with pytest.raises(JobNotFound):
        app.admin.get("no-such-id")
    page = app.admin.jobs(text="quarterly")
    assert [j.id for j in page.jobs] == [mine.id]
    assert [j.id for j in app.admin.jobs(owner="bob").jobs] == [theirs.id]
    assert app.admin.count(queue="docs") == 2
    assert app.admin.count(queue="docs", state="queued", text="MINUTES") == 1


def test_pages_follow_an_opaque_cursor(app: Offload) -> None:
    convert, _ = _tasks(app)
    ids = [convert.enqueue(f"f{i}").id for i in range(7)]  # type: ignore[attr-defined]
    seen: list[str] = []
    cursor = None
    while True:
        page = app.admin.jobs(cursor=cursor, limit=3)
        seen += [j.id for j in page.jobs]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(ids, reverse=True)
    with pytest.raises(InvalidQuery, match="malformed cursor"):
        app.admin.jobs(cursor="not-a-cursor")
    with pytest.raises(InvalidQuery, match="malformed cursor"):
        app.admin.jobs(cursor=ids[0])  # a raw id is not a cursor


def test_bad_input_gets_a_clear_error(app: Offload) -> None:
    with pytest.raises(InvalidQuery, match=r"unknown state 'runing'.*running"):
        app.admin.jobs(state="runing")
    with pytest.raises(InvalidQuery, match="limit"):
        app.admin.jobs(limit=0)
    with pytest.raises(InvalidQuery, match="timezone"):
        app.admin.jobs(created_after=datetime(2026, 1, 1))
    with pytest.raises(InvalidQuery, match="before"):
        app.admin.count(created_after=10.0, created_before=5.0)
    with pytest.raises(InvalidQuery, match="unknown action"):
        app.admin.count(action="explode")
    with pytest.raises(InvalidQuery, match="every job"):
        app.admin.cancel_matching(expected=0)
    with pytest.raises(InvalidQuery, match="search text"):
        app.admin.jobs(text="x" * 1000)


def test_time_range_accepts_datetimes(app: Offload) -> None:
    convert, _ = _tasks(app)
    job = convert.enqueue("a")  # type: ignore[attr-defined]
    created = app.admin.get(job.id).created_at
    after = datetime.fromtimestamp(created - 1, UTC)
    assert [j.id for j in app.admin.jobs(created_after=after).jobs] == [job.id]
    assert app.admin.jobs(created_before=after).jobs == []


def test_one_job_actions_and_history(app: Offload) -> None:
    convert, boom = _tasks(app)
    failing = boom.enqueue()  # type: ignore[attr-defined]
    with WorkerThread(app, queues=["default"], burst=True) as worker:
        worker.join()
    dead = app.admin.get(failing.id)
    assert dead.state is JobState.DEAD
    (attempt,) = dead.attempts
    assert attempt.outcome is AttemptOutcome.FAILED
    assert attempt.error is not None and attempt.error.message == "no luck"
    assert attempt.worker == worker.worker.name
    assert app.admin.retry(failing.id).state is JobState.QUEUED
    assert app.admin.cancel(failing.id).state is JobState.CANCELLED
    app.admin.delete(failing.id)
    with pytest.raises(JobNotFound):
        app.admin.get(failing.id)
    queued = convert.enqueue("x")  # type: ignore[attr-defined]
    with pytest.raises(JobNotFound):
        app.admin.cancel(queued.id, owner="someone-else")
    assert app.admin.get(queued.id).state is JobState.QUEUED


def test_bulk_actions_need_the_count_the_caller_saw(app: Offload) -> None:
    convert, _ = _tasks(app)
    for i in range(5):
        convert.options(owner="alice").enqueue(f"a{i}")  # type: ignore[attr-defined]
    convert.options(owner="bob").enqueue("b")  # type: ignore[attr-defined]
    seen = app.admin.count(action="cancel", owner="alice")
    assert seen == 5
    convert.options(owner="alice").enqueue("late")  # type: ignore[attr-defined]
    with pytest.raises(CountChanged, match="6 job"):
        app.admin.cancel_matching(expected=seen, owner="alice")
    assert app.admin.count(state="cancelled") == 0  # refused: nothing was touched
    assert app.admin.cancel_matching(expected=6, owner="alice") == 6
    assert app.admin.count(state="queued") == 1  # bob's
    assert app.admin.count(action="retry", owner="alice") == 6
    assert app.admin.retry_matching(expected=6, owner="alice", state="cancelled") == 6
    assert app.admin.delete_matching(expected=7, everything=True) == 7
    assert app.admin.count() == 0


def test_pause_and_resume_are_kept_in_the_store(app: Offload) -> None:
    _tasks(app)
    assert app.admin.pause("docs") is True
    assert app.admin.pause("docs") is False
    info = {q.name: q for q in app.admin.queues()}
    assert info["docs"].paused and not info["default"].paused
    with pytest.raises(Exception, match="queue"):
        app.admin.pause("")
    assert app.admin.resume("docs") is True
    assert not {q.name: q for q in app.admin.queues()}["docs"].paused


def test_async_face_and_subscription_with_current_state_first(app: Offload) -> None:
    convert, _ = _tasks(app)
    job = convert.enqueue("late")  # type: ignore[attr-defined]

    async def scenario() -> list[EventKind]:
        kinds = []
        async with asyncio.timeout(30):
            assert (await app.admin.aio.get(job.id)).id == job.id
            async for event in app.admin.aio.subscribe(job=job.id):
                kinds.append(event.kind)
                if event.current:
                    await app.admin.aio.cancel(job.id)
                if event.kind is EventKind.CANCELLED and not event.current:
                    break
        await app.backend.close()
        return kinds

    assert asyncio.run(scenario()) == [EventKind.ENQUEUED, EventKind.CANCELLED]


def test_per_minute_counts_sum_the_store_and_every_worker(app: Offload) -> None:
    convert, boom = _tasks(app)
    for i in range(4):
        convert.enqueue(f"f{i}")  # type: ignore[attr-defined]
    boom.enqueue()  # type: ignore[attr-defined]
    since = app.store_now() - 60
    with WorkerThread(app, queues=["default", "docs"], burst=True) as worker:
        worker.join()  # a stopping worker writes its counts
    rows = {(r.queue, r.task): r for r in app.admin.counts(since=since)}
    docs = rows[("docs", "convert")]
    assert (docs.enqueued, docs.started, docs.succeeded, docs.dead) == (4, 4, 4, 0)
    assert set(docs.wait_ms) == {50, 95, 99} and set(docs.run_ms) == {50, 95, 99}
    failed = rows[("default", "boom")]
    assert (failed.enqueued, failed.started, failed.dead) == (1, 1, 1)
    with pytest.raises(InvalidQuery, match="a week"):
        app.admin.counts(since=0)


def test_a_subscription_block_ends_its_store_subscription(app: Offload) -> None:
    convert, _ = _tasks(app)
    job = convert.enqueue("a")  # type: ignore[attr-defined]

    async def scenario() -> list[bool]:
        seen = []
        async with asyncio.timeout(30):
            async with app.admin.aio.subscribe(owner=None, queue="docs") as events:
                async for event in events:
                    seen.append(event.current and event.id == job.id)
                    break  # a consumer that goes away early
        await app.backend.close()
        return seen

    assert asyncio.run(scenario()) == [True]


def test_an_owners_batch_subscription_hears_the_batch_count_down_and_no_other(
    app: Offload,
) -> None:
    convert, _ = _tasks(app)
    mine = app.batch([convert.options(owner="alice").s(n) for n in ("a", "b")])  # type: ignore[attr-defined]
    app.batch([convert.options(owner="bob").s("c")])  # type: ignore[attr-defined]

    async def scenario(workers: contextlib.ExitStack) -> list[tuple[str | None, float]]:
        seen: list[tuple[str | None, float]] = []
        async with asyncio.timeout(30):
            async with app.admin.aio.subscribe(owner="alice", batch=mine.id) as events:
                async for event in events:
                    if event.kind is EventKind.BATCH_PROGRESS:
                        seen.append((event.batch, event.progress))
                        if event.progress == 1.0:
                            break
                        if event.current:  # where it stands is heard: now run it
                            workers.enter_context(WorkerThread(app, queues=["docs"]))
        await app.backend.close()
        return seen

    with contextlib.ExitStack() as workers:
        seen = asyncio.run(scenario(workers))
    assert seen[0] == (mine.id, 0.0) and seen[-1] == (mine.id, 1.0)
    assert {batch for batch, _ in seen} == {mine.id}
    counted = JobEvent(kind=EventKind.BATCH_PROGRESS, batch=mine.id, progress=0.5, at=0.0)
    assert not app.admin.aio.subscribe(owner="alice").wants(counted)  # whose batch? untold
    assert app.admin.aio.subscribe().wants(counted)  # everything, for staff
