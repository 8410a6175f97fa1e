"""Chains: ``a.s(...) | b.s() | c.s()`` pass each result on, on every store, once."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from offload import InvalidArguments, JobState, Offload
from offload.backends.base import EnqueueParams, JobFilter, Outcome, OutcomeKind, QueryParams
from offload.chains import hand_on, next_step
from offload.context import current_job
from offload.records import JobRecord
from worker_helpers import WorkerThread, wait_until


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Offload:
    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path}/chains.db"}.get(
        request.param
    ) or str(request.getfixturevalue(f"{request.param}_url"))
    application = Offload(url, default_retries=0)
    yield application
    application.close()


def jobs_of(app: Offload, task: str) -> list[object]:
    return app.backend.blocking.query(QueryParams(filter=JobFilter(task=task))).jobs


def test_each_step_gets_the_result_before_it(app: Offload) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    @app.task
    def describe(x: int, prefix: str = "") -> str:
        return f"{prefix}{x}"

    first = (add.s(2, 3) | double.s() | describe.s(prefix="n=")).enqueue()
    with WorkerThread(app):
        wait_until(lambda: len(jobs_of(app, "describe")) == 1, what="the last step")
        (last,) = app.backend.blocking.query(QueryParams(filter=JobFilter(task="describe"))).jobs
        assert app.job(last.id).result(timeout=20) == "n=10"
    assert first.result(timeout=1) == 5
    (middle,) = app.backend.blocking.query(QueryParams(filter=JobFilter(task="double"))).jobs
    assert middle.meta["chained_from"] == first.id
    assert last.meta["chained_from"] == middle.id
    assert "chain" not in last.meta  # nothing follows the last step


def test_a_failed_step_ends_the_chain(app: Offload) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    @app.task
    def refuse(x: int) -> int:
        raise ValueError(f"no {x}")

    @app.task
    def never(x: int) -> int:
        return x

    (add.s(1, 1) | refuse.s() | never.s()).enqueue()
    with WorkerThread(app):
        wait_until(
            lambda: [j.state for j in jobs_of(app, "refuse")] == [JobState.DEAD],  # type: ignore[attr-defined]
            what="the failing step to be dead",
        )
    assert jobs_of(app, "never") == []


def test_a_repeated_hand_off_stores_the_next_step_once(app: Offload) -> None:
    """A worker that dies after storing the next step but before acknowledging the
    current one runs the current one again: the second hand-off is refused."""

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    @app.task
    def double(x: int) -> int:
        return 2 * x

    job = (add.s(1, 2) | double.s()).enqueue()
    record = job.record
    successor = next_step(record, b"3")
    again = next_step(record, b"3")
    assert successor is not None and again is not None and successor.id == again.id
    # The blocking facade, as a web app would call it: one asyncio.run per call would
    # open (and leave) a connection pool per event loop on PostgreSQL.
    app.backend.blocking.enqueue(EnqueueParams(jobs=[successor]))
    with pytest.raises(ValueError, match="already exists"):
        app.backend.blocking.enqueue(EnqueueParams(jobs=[again]))
    assert len(jobs_of(app, "double")) == 1


def test_signatures_check_what_they_are_given_and_enqueue_checks_the_rest(app: Offload) -> None:
    @app.task
    def double(x: int) -> int:
        return 2 * x

    with pytest.raises(InvalidArguments, match="argument 'x'"):
        double.s("two")  # type: ignore[arg-type]
    waiting = double.s()  # fine in a chain, where the previous step supplies x
    with pytest.raises(InvalidArguments, match="missing a required argument"):
        double.enqueue_many([waiting])


def test_a_step_cancelled_while_it_runs_hands_nothing_on(app: Offload) -> None:
    """The hand-off is fenced: the next step is stored with the step's acknowledgement,
    which the store refuses once the step was cancelled (or reaped) under its worker."""

    @app.task
    def first() -> int:
        app.job(current_job().id).cancel()  # a person cancels it while it runs
        return 1

    @app.task
    def second(x: int) -> int:
        return x

    job = (first.s() | second.s()).enqueue()
    with WorkerThread(app):
        wait_until(lambda: job.state is JobState.CANCELLED, what="the first step cancelled")
    # the worker has stopped, and so acknowledged (or been refused) everything it ran
    assert job.state is JobState.CANCELLED
    assert jobs_of(app, "second") == []


def test_a_success_carries_the_next_step_rather_than_storing_it() -> None:
    app = Offload("memory://")

    @app.task
    def first() -> int:
        return 1

    @app.task
    def second(x: int) -> int:
        return x

    (first.s() | second.s()).enqueue()
    (job,) = app.backend.blocking.query(QueryParams()).jobs
    done = Outcome(id=job.id, delivery=1, kind=OutcomeKind.SUCCEEDED, result=b"1")
    handed = asyncio.run(hand_on(app, job, done))
    (successor,) = handed.follow_ups
    assert successor.task == "second" and successor.payload == b"[[1],{}]"
    assert len(app.backend.blocking.query(QueryParams()).jobs) == 1  # nothing stored yet


@pytest.mark.parametrize(
    "chain",
    [
        [{"task": "second"}],  # no payload, no queue
        [{"task": "second", "payload": "not json", "queue": "default"}],
        [{"task": "second", "payload": "[[],{}]", "queue": "default", "priority": "high"}],
        "second",
    ],
)
def test_a_malformed_chain_step_fails_the_job_with_a_log_line(
    chain: object, caplog: pytest.LogCaptureFixture
) -> None:
    app = Offload("memory://")
    job = JobRecord(id=app.new_id(), task="first", queue="default", state=JobState.RUNNING,
                    payload=b"[[],{}]", attempt=1, delivery=1, meta={"chain": chain})  # fmt: skip
    done = Outcome(id=job.id, delivery=1, kind=OutcomeKind.SUCCEEDED, result=b"1")
    with caplog.at_level(logging.ERROR, logger="offload.worker"):
        failed = asyncio.run(hand_on(app, job, done))
    assert failed.kind is OutcomeKind.DEAD and not failed.follow_ups
    assert failed.error is not None and failed.error.type == "ChainStepUnreadable"
    assert any(job.id in r.getMessage() and "unreadable" in r.getMessage() for r in caplog.records)
