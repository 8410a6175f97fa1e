"""Micro-batching: one call for many jobs of a task, each job with its own outcome."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from offload import JobState, Offload
from offload.backends.params import ClaimParams, ReapParams
from offload.errors import ConfigurationError, InvalidArguments
from offload.worker.runner import Worker
from worker_helpers import WorkerThread, wait_until

# -- declaring one -----------------------------------------------------------------------


def test_a_batched_task_is_enqueued_one_item_at_a_time_and_checked_per_item() -> None:
    app = Offload("memory://")

    @app.task(batch_size=10)
    def double(numbers: list[int]) -> list[int]:
        return [n * 2 for n in numbers]

    assert double([1, 2]) == [2, 4]  # still a plain function when called
    job = double.enqueue(21)
    assert job.state is JobState.QUEUED
    with pytest.raises(InvalidArguments, match="numbers"):
        double.enqueue("not a number")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
        ({"batch_size": 5, "batch_wait_s": -1}, "batch_wait_s must be a number >= 0"),
        ({"batch_wait_s": 1.0}, "batch_wait_s needs batch_size"),
    ],
)
def test_bad_batch_settings_are_refused(options: dict[str, float], message: str) -> None:
    app = Offload("memory://")
    with pytest.raises(ConfigurationError, match=message):
        app.task(**options)  # type: ignore[call-overload]


def test_a_batched_function_must_take_one_list() -> None:
    app = Offload("memory://")
    with pytest.raises(ConfigurationError, match="exactly one parameter"):

        @app.task(batch_size=5)
        def two(a: list[int], b: int) -> list[int]:  # type: ignore[misc]
            return a

    with pytest.raises(ConfigurationError, match=r"must be a list \(list\[T\]\)"):

        @app.task(batch_size=5)
        def scalar(a: int) -> list[int]:  # type: ignore[arg-type]
            return [a]


def test_limits_and_micro_batches_do_not_mix_yet() -> None:
    app = Offload("memory://")
    with pytest.raises(ConfigurationError, match="limits do not apply to micro-batched"):
        app.task(batch_size=5, rate="1/s")(lambda items: items)  # type: ignore[call-overload]


def test_the_process_pool_refuses_micro_batched_tasks_with_the_way_out() -> None:
    app = Offload("memory://")

    @app.task(batch_size=5)
    def double(numbers: list[int]) -> list[int]:
        return numbers

    with pytest.raises(ValueError, match="run on the async or thread pool"):
        Worker(app, pool="process", app_spec="tests:app")


# -- on every store ----------------------------------------------------------------------


def test_ready_jobs_go_to_one_call_and_each_gets_its_own_result(store_url: str) -> None:
    app = Offload(store_url)
    calls: list[list[int]] = []
    lock = threading.Lock()

    @app.task(batch_size=10, batch_wait_s=0.05)
    def double(numbers: list[int]) -> list[int]:
        with lock:
            calls.append(list(numbers))
        return [n * 2 for n in numbers]

    try:
        jobs = double.enqueue_many(double.s(n) for n in range(25))
        with WorkerThread(app, idle_check_s=0.05, concurrency=10):
            wait_until(lambda: all(j.refresh().state is JobState.SUCCEEDED for j in jobs))
        assert [job.result() for job in jobs] == [n * 2 for n in range(25)]
        assert sorted(n for call in calls for n in call) == list(range(25))  # each item once
        assert max(len(call) for call in calls) == 10  # the first claim filled a whole batch
        assert all(len(call) <= 10 for call in calls)
        assert all(app.job(j.id).record.attempt == 1 for j in jobs)
    finally:
        app.close()


def test_only_the_items_that_failed_are_retried(store_url: str) -> None:
    app = Offload(store_url)
    seen: list[list[int]] = []

    @app.task(batch_size=20, batch_wait_s=0.05, retries=1, backoff=0)
    async def check(numbers: list[int]) -> list[int | Exception]:
        seen.append(list(numbers))
        first_try = len(seen) == 1
        return [ValueError(f"odd {n}") if first_try and n % 2 else n for n in numbers]

    try:
        jobs = check.enqueue_many(check.s(n) for n in range(6))
        with WorkerThread(app, idle_check_s=0.05):
            wait_until(lambda: all(j.refresh().state is JobState.SUCCEEDED for j in jobs))
        assert seen[0] == list(range(6))
        assert sorted(n for call in seen[1:] for n in call) == [1, 3, 5]  # the failed ones only
        attempts = {n: app.job(j.id).record.attempt for n, j in enumerate(jobs)}
        assert attempts == {0: 1, 1: 2, 2: 1, 3: 2, 4: 1, 5: 2}
        assert [j.result() for j in jobs] == list(range(6))
    finally:
        app.close()


def test_a_call_that_raises_fails_every_item_and_a_wrong_count_is_not_retried(
    store_url: str,
) -> None:
    app = Offload(store_url)

    @app.task(batch_size=5, batch_wait_s=0.05, retries=0)
    def broken(items: list[str]) -> list[str]:
        raise RuntimeError("the model server is down")

    @app.task(batch_size=5, batch_wait_s=0.05, retries=3)
    def short(items: list[str]) -> list[str]:
        return items[:1]

    try:
        failing = broken.enqueue_many(broken.s(x) for x in "abc")
        miscounted = short.enqueue_many(short.s(x) for x in "xyz")
        with WorkerThread(app, idle_check_s=0.05):
            wait_until(
                lambda: all(j.refresh().state is JobState.DEAD for j in failing + miscounted)
            )
        for job in failing:
            error = app.job(job.id).record.error
            assert error is not None and error.message == "the model server is down"
        for job in miscounted:
            record = app.job(job.id).record
            assert record.attempt == 1  # a wrong count is a bug: retrying cannot help
            assert record.error is not None
            assert "got 3 items and returned 1 results" in record.error.message
    finally:
        app.close()


def test_a_partial_batch_runs_after_batch_wait_s(store_url: str) -> None:
    app = Offload(store_url)
    calls: list[list[str]] = []

    @app.task(batch_size=100, batch_wait_s=0.05)
    def upper(words: list[str]) -> list[str]:
        calls.append(words)
        return [w.upper() for w in words]

    try:
        jobs = upper.enqueue_many(upper.s(w) for w in ("a", "b", "c"))
        with WorkerThread(app, idle_check_s=0.05):
            wait_until(lambda: all(j.refresh().state is JobState.SUCCEEDED for j in jobs))
        assert [j.result() for j in jobs] == ["A", "B", "C"]
        assert sum(len(c) for c in calls) == 3
    finally:
        app.close()


def test_a_forming_batch_does_not_let_other_jobs_past_the_worker_concurrency() -> None:
    app = Offload("memory://", default_retries=0)
    live = {"now": 0, "most": 0}

    @app.task(batch_size=50, batch_wait_s=0.2)
    async def embed(texts: list[str]) -> list[int]:
        return [len(t) for t in texts]

    @app.task
    async def render(n: int) -> None:
        live["now"] += 1
        live["most"] = max(live["most"], live["now"])
        await asyncio.sleep(0.01)
        live["now"] -= 1

    embed.enqueue("a")
    jobs = render.enqueue_many(render.s(i) for i in range(30))
    stats = asyncio.run(Worker(app, concurrency=1, burst=True, idle_check_s=0.05).run())
    assert live["most"] == 1  # claimed into the batch's room, they queued for the one slot
    assert all(j.refresh().state is JobState.SUCCEEDED for j in jobs)
    assert stats.succeeded == 31


def test_a_batched_job_that_crashed_a_worker_runs_alone_as_a_batch_of_one(tmp_path: Path) -> None:
    """A worker killed mid-batch leaves its jobs charged a crash; each then runs alone,
    and must still be called with a list (it was called with the bare item)."""
    app = Offload(f"sqlite:///{tmp_path / 'jobs.db'}")

    @app.task(batch_size=4, batch_wait_s=0.05)
    def double(numbers: list[int]) -> list[int]:
        return [n * 2 for n in numbers]

    async def crash_a_worker() -> None:  # claimed, then its lease runs out unrenewed
        await app.backend.claim(ClaimParams(queues=["default"], limit=10, worker="gone",
                                            lease_s=0.05))  # fmt: skip
        await asyncio.sleep(0.2)
        await app.backend.reap_expired(ReapParams(max_crashes=3))

    try:
        jobs = double.enqueue_many(double.s(n) for n in range(3))
        asyncio.run(crash_a_worker())
        assert all(app.job(j.id).record.crashes == 1 for j in jobs)
        with WorkerThread(app, idle_check_s=0.05, concurrency=4):
            wait_until(lambda: all(j.refresh().state.is_terminal for j in jobs))
        assert [(j.refresh().state, j.result()) for j in jobs] == [
            (JobState.SUCCEEDED, n * 2) for n in range(3)
        ]
    finally:
        app.close()
