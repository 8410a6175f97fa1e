"""The worker against real stores: outcomes, retries, timeouts, cancellation, shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from pathlib import Path

import msgspec
import pytest

from offload import (
    Abort,
    InvalidArguments,
    JobCancelled,
    JobFailed,
    JobState,
    Offload,
    Retry,
    current_job,
)
from offload.backends.base import EnqueueParams, IdsParams
from offload.records import NewJob
from worker_helpers import WorkerThread, wait_until


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Offload:
    url = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path}/jobs.db",
    }.get(request.param) or request.getfixturevalue(f"{request.param}_url")
    application = Offload(url, default_retries=0)
    yield application
    application.close()


@dataclasses.dataclass
class Page:
    number: int
    text: str


def test_sync_and_async_tasks_return_typed_results(app: Offload) -> None:
    @app.task
    def render(page: Page, scale: float = 1.0) -> dict[str, float]:
        assert isinstance(page, Page)  # decoded back to the annotated type
        return {"width": page.number * scale}

    @app.task
    async def shout(text: str) -> str:
        await asyncio.sleep(0)
        return text.upper()

    a = render.enqueue(Page(3, "x"), scale=2.0)
    b = shout.enqueue("hi")
    WorkerThread(app, burst=True).__enter__().join()
    assert a.result(timeout=5) == {"width": 6.0}
    assert b.result(timeout=5) == "HI"
    assert a.state is JobState.SUCCEEDED
    assert a.progress.fraction == 1.0


def test_bad_arguments_fail_in_the_caller(app: Offload) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(InvalidArguments, match="argument 'a'"):
        add.enqueue("1", 2)  # type: ignore[arg-type]
    with pytest.raises(InvalidArguments, match="missing a required argument"):
        add.enqueue(1)  # type: ignore[call-arg]
    with pytest.raises(InvalidArguments, match="JSON"):

        @app.task
        def anything(x: object) -> None: ...

        anything.enqueue(object())
    assert app.backend.blocking.stats() == []


def test_retries_go_through_scheduled_then_dead(app: Offload) -> None:
    calls: list[int] = []

    @app.task(retries=2, backoff=0)
    def flaky() -> None:
        calls.append(current_job().attempt)
        raise ConnectionError("partner down")

    job = flaky.enqueue()
    WorkerThread(app, burst=True).__enter__().join()
    with pytest.raises(JobFailed, match="ConnectionError: partner down") as failed:
        job.result(timeout=5)
    assert calls == [1, 2, 3]
    assert job.record.attempt == 3
    assert failed.value.error is not None and "Traceback" in (failed.value.error.traceback or "")


def test_retry_and_abort_exceptions(app: Offload) -> None:
    @app.task(retries=5, backoff=0)
    def asks_again() -> str:
        if current_job().attempt < 2:
            raise Retry("not yet", delay_s=0)
        return "done"

    @app.task(retries=5, backoff=0)
    def gives_up() -> None:
        raise Abort("bad input, retrying cannot help")

    @app.task(retries=5, backoff=0, retry_on=(ConnectionError,))
    def wrong_kind() -> None:
        raise KeyError("missing")

    a, b, c = asks_again.enqueue(), gives_up.enqueue(), wrong_kind.enqueue()
    WorkerThread(app, burst=True).__enter__().join()
    assert a.result(timeout=5) == "done"
    for job in (b, c):
        with pytest.raises(JobFailed):
            job.result(timeout=5)
        assert job.record.attempt == 1


def test_async_timeout_is_hard(app: Offload) -> None:
    @app.task(timeout_s=0.2)
    async def stuck() -> None:
        await asyncio.sleep(3600)

    job = stuck.enqueue()
    WorkerThread(app, burst=True).__enter__().join()
    with pytest.raises(JobFailed, match="TimeoutError"):
        job.result(timeout=5)


def test_thread_task_sees_timeout_flag(app: Offload) -> None:
    saw_flag = threading.Event()

    @app.task(timeout_s=0.2)
    def cooperative() -> None:
        while not current_job().cancelled:
            time.sleep(0.01)
        saw_flag.set()

    job = cooperative.enqueue()
    WorkerThread(app, burst=True).__enter__().join()
    with pytest.raises(JobFailed, match="TimeoutError"):
        job.result(timeout=5)
    assert saw_flag.wait(5)


def test_cancel_running_async_and_thread_jobs(app: Offload) -> None:
    started = threading.Event()
    async_cancelled = threading.Event()
    thread_saw_flag = threading.Event()

    @app.task
    async def long_async() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            async_cancelled.set()
            raise

    @app.task
    def long_sync() -> None:
        while not current_job().cancelled:
            time.sleep(0.01)
        thread_saw_flag.set()

    @app.task
    def after() -> str:
        return "still working"

    app.lease_s = 0.6  # heartbeats every 0.2 s tell the worker about the cancellation
    a, b = long_async.enqueue(), long_sync.enqueue()
    with WorkerThread(app, concurrency=4):
        wait_until(lambda: a.state is JobState.RUNNING and b.state is JobState.RUNNING)
        assert a.cancel() and b.cancel()
        assert async_cancelled.wait(10)
        assert thread_saw_flag.wait(10)
        assert after.enqueue().result(timeout=10) == "still working"
    for job in (a, b):
        assert job.state is JobState.CANCELLED
        with pytest.raises(JobCancelled):
            job.result(timeout=1)


def test_poison_jobs_are_dead_lettered_and_the_worker_keeps_going(app: Offload) -> None:
    @app.task
    def typed(n: int) -> int:
        return n

    garbage = [
        NewJob(id=app.new_id(), task="typed", queue="default", payload=b"{not json"),
        NewJob(id=app.new_id(), task="typed", queue="default", payload=b'[["x"], {}]'),
        NewJob(id=app.new_id(), task="typed", queue="default", payload=b"[[], {}]"),
        NewJob(id=app.new_id(), task="nope", queue="default", payload=b"[[], {}]"),
    ]
    app.backend.blocking.enqueue(EnqueueParams(jobs=garbage))
    good = typed.enqueue(7)
    WorkerThread(app, burst=True).__enter__().join()
    assert good.result(timeout=5) == 7
    records = app.backend.blocking.get(IdsParams(ids=[g.id for g in garbage]))
    assert [r.state for r in records] == [JobState.DEAD] * 4
    kinds = [r.error.type for r in records if r.error]
    assert kinds == ["PayloadError", "PayloadError", "PayloadError", "UnknownTask"]
    assert "typed" in (records[3].error.message if records[3].error else "")


def test_unique_keys_return_the_live_job(app: Offload) -> None:
    @app.task
    def convert(name: str) -> str:
        return name

    first = convert.options(key="u42:a.docx").enqueue("a.docx")
    again = convert.options(key="u42:a.docx").enqueue("a.docx")
    assert again.id == first.id
    WorkerThread(app, burst=True).__enter__().join()
    assert first.result(timeout=5) == "a.docx"
    later = convert.options(key="u42:a.docx").enqueue("a.docx")
    assert later.id != first.id


def test_priority_then_age_order(app: Offload) -> None:
    order: list[str] = []

    @app.task
    def note(label: str) -> None:
        order.append(label)

    note.enqueue("low-1")
    note.options(priority=9).enqueue("high")
    note.enqueue("low-2")
    note.options(priority=-1).enqueue("lowest")
    WorkerThread(app, burst=True, concurrency=1).__enter__().join()
    assert order == ["high", "low-1", "low-2", "lowest"]


def test_delayed_jobs_wait_as_scheduled(app: Offload) -> None:
    @app.task
    def later() -> str:
        return "ok"

    job = later.options(delay=0.3).enqueue()
    assert job.state is JobState.SCHEDULED
    burst = WorkerThread(app, burst=True).__enter__()
    burst.join()
    assert job.state is JobState.SCHEDULED  # a burst worker does not wait for future jobs
    with WorkerThread(app):
        assert job.result(timeout=10) == "ok"


def test_progress_is_visible_while_running(app: Offload) -> None:
    release = threading.Event()

    @app.task
    def slow() -> None:
        current_job().set_progress(0.25, "page 1 of 4")
        release.wait(10)

    job = slow.enqueue()
    with WorkerThread(app):
        wait_until(lambda: job.progress.fraction == 0.25, what="progress")
        assert job.progress.message == "page 1 of 4"
        release.set()
        job.result(timeout=10)


def test_the_last_progress_message_before_the_end_is_kept(app: Offload) -> None:
    @app.task
    async def pages() -> None:
        current_job().set_progress(0.25, "page 1 of 4")
        await asyncio.sleep(0.05)  # that report is on its way: the next ones wait their turn
        for page in range(2, 5):
            current_job().set_progress(page / 4, f"page {page} of 4")

    job = pages.enqueue()
    with WorkerThread(app):
        job.result(timeout=10)
    assert job.refresh().progress.message == "page 4 of 4"


def test_shutdown_hands_unfinished_jobs_back_without_an_attempt(app: Offload) -> None:
    @app.task
    async def endless() -> None:
        await asyncio.sleep(3600)

    job = endless.enqueue()
    runner = WorkerThread(app, grace_s=0.2).__enter__()
    wait_until(lambda: job.state is JobState.RUNNING)
    stats = runner.stop()
    assert stats.released == 1
    record = job.refresh().record
    assert record.state is JobState.QUEUED
    assert record.attempt == 0


def test_an_idle_worker_wakes_for_new_work(app: Offload) -> None:
    @app.task
    def ping() -> str:
        return "pong"

    with WorkerThread(app):
        time.sleep(0.2)  # let it go idle
        assert ping.enqueue().result(timeout=10) == "pong"


def test_old_results_are_pruned_after_retention(tmp_path: Path) -> None:
    now = [1_000_000.0]
    app = Offload(f"sqlite:///{tmp_path}/p.db", retention_s=60, clock=lambda: now[0])

    @app.task
    def quick() -> int:
        return 1

    job = quick.enqueue()
    WorkerThread(app, burst=True).__enter__().join()
    assert job.state is JobState.SUCCEEDED
    now[0] += 61
    from offload.worker.maintenance import Maintenance

    maintenance = Maintenance(app.backend, owner="t", max_crashes=3, retention_s=60)
    asyncio.run(maintenance.run_once())
    with pytest.raises(Exception, match="no job"):
        job.refresh()
    app.close()


def test_results_decode_without_the_task_registered(app: Offload, tmp_path: Path) -> None:
    @app.task
    def data() -> dict[str, list[int]]:
        return {"a": [1, 2]}

    job = data.enqueue()
    WorkerThread(app, burst=True).__enter__().join()
    assert msgspec.json.decode(job.refresh().record.result or b"") == {"a": [1, 2]}
