"""The management API's edges: bad input, a bulk action racing new jobs, batch options."""

from __future__ import annotations

from typing import Any

import pytest

from offload import JobState, Offload
from offload.admin.filters import job_filter
from offload.admin.operations import Action, act_on_matching
from offload.errors import BatchNotFound, ConfigurationError, InvalidArguments, InvalidQuery
from worker_helpers import WorkerThread


@pytest.fixture
def app() -> Any:
    application = Offload("memory://", default_retries=0)
    yield application
    application.close()


@pytest.mark.parametrize(
    "call",
    [
        lambda a: a.jobs(cursor=5),
        lambda a: a.jobs(state=5),
        lambda a: a.jobs(queue="\ud800"),
        lambda a: a.jobs(owner="a\x00b"),
        lambda a: a.jobs(text="\x1b[2J"),
        lambda a: a.jobs(created_after=1e300),
        lambda a: a.jobs(created_after=float("nan")),
        lambda a: a.get(None),
        lambda a: a.get(""),
        lambda a: a.cancel(5),
        lambda a: a.batch(None),
        lambda a: a.counts(since=-1e300, until=0),
        lambda a: a.counts(since=0, until=60, queue=5),
    ],
)
def test_garbage_gets_invalid_query(app: Offload, call: Any) -> None:
    with pytest.raises(InvalidQuery):
        call(app.admin)


def test_an_unknown_batch_is_a_batch_not_found(app: Offload) -> None:
    with pytest.raises(BatchNotFound, match="no batch with id 'nope'"):
        app.admin.batch("nope")


def test_a_bulk_action_leaves_jobs_stored_after_its_count_alone(app: Offload) -> None:
    @app.task
    def convert(name: str) -> str:
        return name

    old = [convert.enqueue(f"old-{i}") for i in range(3)]
    op = act_on_matching(Action.CANCEL, job_filter(state="queued"), 3, everything=False)
    blocking = app.backend.blocking
    verb, params = next(op)
    late: list[Any] = []
    try:
        while True:
            answer = (
                getattr(blocking, verb)() if params is None else getattr(blocking, verb)(params)
            )
            if verb == "count":  # new jobs arrive between the count and the action
                late = [convert.enqueue(f"new-{i}") for i in range(2)]
            verb, params = op.send(answer)
    except StopIteration as done:
        touched = done.value
    assert touched == 3
    assert [j.refresh().state for j in old] == [JobState.CANCELLED] * 3
    assert [j.refresh().state for j in late] == [JobState.QUEUED] * 2


def test_owners_are_checked_at_enqueue(app: Offload) -> None:
    @app.task
    def convert(name: str) -> str:
        return name

    for owner in (5, "", "a\x00b", "x" * 300):
        with pytest.raises(ConfigurationError, match="owner"):
            convert.options(owner=owner).enqueue("a")  # type: ignore[arg-type]
    assert app.admin.count() == 0


def test_the_last_follow_up_given_for_an_end_wins(app: Offload) -> None:
    @app.task
    def convert(name: str) -> str:
        return name

    @app.task
    def note(job_id: str, tag: str) -> None: ...

    job = convert.options(on_cancel=note.s(tag="1")).options(on_cancel=note.s(tag="2")).enqueue("a")
    app.admin.cancel(job.id)
    (stored,) = app.admin.jobs(task="note").jobs
    assert b'"2"' in stored.payload


def test_a_batch_callback_keeps_its_options_and_is_checked_at_the_call(app: Offload) -> None:
    received: list[int] = []

    @app.task
    def convert(name: str) -> str:
        return name

    @app.task(queue="callbacks")
    def zip_all(outcomes: list[dict[str, Any]], tag: str) -> None:
        received.append(len(outcomes))

    @app.task
    def thanks(job_id: str) -> None: ...

    with pytest.raises(InvalidArguments, match="tag"):
        app.batch([convert.s("a")], on_complete=zip_all.s())  # its own argument is missing
    assert app.admin.count() == 0
    callback = zip_all.options(owner="alice", priority=5, on_success=thanks.s()).s(tag="t")
    batch = app.batch([convert.s("a"), convert.s("b"), convert.s("c")], on_complete=callback)
    first, second, third = batch.jobs()
    app.admin.cancel(first.id)
    app.admin.delete(second.id)  # a deleted member is no longer waited for
    with WorkerThread(app, queues=["default", "callbacks"], burst=True) as worker:
        worker.join()
    status = batch.status()
    assert status.finished and status.done == status.total == 3
    assert received == [2]  # the outcomes of the members still stored
    (stored,) = app.admin.jobs(task="zip_all").jobs
    assert (stored.owner, stored.priority, stored.state) == ("alice", 5, JobState.SUCCEEDED)
    assert app.admin.count(task="thanks") == 1  # the callback's own follow-up ran
    assert third.refresh().state is JobState.SUCCEEDED
