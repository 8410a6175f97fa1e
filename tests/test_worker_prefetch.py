"""Claiming ahead: short jobs are claimed beyond the free slots, long ones are not, and a
job claimed ahead of a pause goes back to its queue instead of starting."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from offload import Offload
from offload.backends.base import ClaimParams
from offload.records import JobRecord
from worker_helpers import WorkerThread, wait_until


@pytest.fixture
def app(store_url: str) -> Iterator[Offload]:
    application = Offload(store_url, default_retries=0)
    yield application
    application.close()


def count(app: Offload, state: str) -> int:
    return sum(q.counts.get(state, 0) for q in app.admin.queues())


def claim_limits(app: Offload) -> list[int]:
    """The limit of every claim the worker makes from now on (its waits' claims aside)."""
    limits: list[int] = []
    claim = app.backend.claim

    async def spy(params: ClaimParams) -> list[JobRecord]:
        limits.append(params.limit)
        return await claim(params)

    app.backend.claim = spy  # type: ignore[method-assign]
    return limits


def test_short_jobs_are_claimed_ahead_and_each_runs_once(app: Offload) -> None:
    ran: list[int] = []

    @app.task
    def short(i: int) -> None:
        ran.append(i)

    short.enqueue_many([short.s(i) for i in range(300)])
    limits = claim_limits(app)
    WorkerThread(app, concurrency=2, burst=True).__enter__().join()
    assert sorted(ran) == list(range(300))
    assert max(limits) > 2, limits  # once jobs proved short, claims reach past the slots
    assert max(limits) <= 10, limits  # never more than the slots and 4 times as many
    assert count(app, "succeeded") == 300


def test_prefetch_zero_claims_only_free_slots(app: Offload) -> None:
    @app.task
    def short(i: int) -> None:
        pass

    short.enqueue_many([short.s(i) for i in range(100)])
    limits = claim_limits(app)
    WorkerThread(app, concurrency=2, burst=True, prefetch=0).__enter__().join()
    assert limits and max(limits) <= 2, limits
    assert count(app, "succeeded") == 100


def test_long_jobs_are_not_claimed_ahead(app: Offload) -> None:
    @app.task
    def slow(i: int) -> None:
        time.sleep(0.06)  # a slot finishes under one in 20 ms: none is claimed ahead

    slow.enqueue_many([slow.s(i) for i in range(6)])
    limits = claim_limits(app)
    WorkerThread(app, concurrency=1, burst=True).__enter__().join()
    assert limits and max(limits) <= 1, limits
    assert count(app, "succeeded") == 6


def test_a_negative_prefetch_is_refused(app: Offload) -> None:
    with pytest.raises(ValueError, match="prefetch must be 0 or more"):
        WorkerThread(app, prefetch=-1)


def pause_behind_a_line(app: Offload, jobs: int, prefetch: int) -> tuple[WorkerThread, list[int]]:
    """A worker at -c 1 runs job 0 with the others claimed ahead, then the queue is paused
    and job 0 ends: returns the running worker and the jobs that ran."""
    release = threading.Event()
    ran: list[int] = []

    @app.task
    def blocking(i: int) -> None:
        ran.append(i)
        if i == 0:
            assert release.wait(30)

    blocking.enqueue_many([blocking.s(i) for i in range(jobs)])
    worker = WorkerThread(app, concurrency=1, prefetch=prefetch).__enter__()
    wait_until(lambda: ran == [0] and len(worker.worker._waiting) == jobs - 1)
    app.admin.pause("default")
    wait_until(lambda: worker.worker.watch.is_paused("default"))
    release.set()
    wait_until(lambda: count(app, "queued") == jobs - 1 and count(app, "succeeded") == 1)
    return worker, ran


def test_a_job_claimed_ahead_of_a_pause_goes_back_to_its_queue(app: Offload) -> None:
    worker, ran = pause_behind_a_line(app, jobs=4, prefetch=3)
    assert ran == [0]  # the three claimed ahead never started
    app.admin.resume("default")
    wait_until(lambda: sorted(ran) == [0, 1, 2, 3])
    worker.stop()
    assert count(app, "succeeded") == 4


def test_a_long_run_of_jobs_claimed_ahead_goes_back_whole_after_a_pause() -> None:
    """Each job dropped from the line is dropped in a loop, not by a nested call per job
    (2,000 of them once overflowed the stack and lost the running job's outcome)."""
    app = Offload("memory://", default_retries=0)
    worker, ran = pause_behind_a_line(app, jobs=2000, prefetch=3000)
    assert ran == [0]
    stats = worker.stop()
    assert stats.released == 1999 and stats.succeeded == 1
    app.close()


def test_a_worker_serving_micro_batches_claims_only_their_room(app: Offload) -> None:
    """Batch members never wait in line for a slot: claiming ahead for them would lease
    every job at once and start a batch call per batch filled, past the slots."""
    lock = threading.Lock()
    running: list[int] = []
    most = [0]
    done: list[int] = []

    @app.task(batch_size=2)
    def pair(items: list[int]) -> list[None]:
        with lock:
            running.append(1)
            most[0] = max(most[0], len(running))
        time.sleep(0.01)
        with lock:
            running.pop()
            done.extend(items)
        return [None] * len(items)

    pair.enqueue_many([pair.s(i) for i in range(40)])
    WorkerThread(app, concurrency=1, burst=True, prefetch=4).__enter__().join()
    assert sorted(done) == list(range(40))
    assert most[0] == 1, most  # one slot: one batch call at a time
