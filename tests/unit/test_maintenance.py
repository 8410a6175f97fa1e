"""The leader's upkeep backs off when there is nothing to do, and comes back when there is."""

from __future__ import annotations

import asyncio
import logging

import pytest

from offload import JobState
from offload.backends.base import BackendError, EnqueueParams, IdsParams, ValueRejected
from offload.backends.memory import MemoryStore, memory_backend
from offload.records import JobRecord, NewJob
from offload.worker.maintenance import LeaderService, Maintenance


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Soon:
    """A leader service that asks for a tick within ``seconds`` (None: nothing pending)."""

    def __init__(self) -> None:
        self.seconds: float | None = None

    async def tick(self, backend: object, now_s: float) -> float | None:
        return self.seconds


def test_an_idle_leader_ticks_less_and_less_often_then_wakes_for_work() -> None:
    async def scenario() -> None:
        clock = Clock()
        backend = memory_backend("memory://", clock=clock)
        service = Soon()
        upkeep = Maintenance(
            backend, owner="w1", max_crashes=3, retention_s=60, interval_s=1.0,
            idle_interval_s=5.0, services=[service],
        )  # fmt: skip
        pauses = [upkeep._next_pause(await upkeep.run_once()) for _ in range(5)]
        assert pauses == [2.0, 4.0, 5.0, 5.0, 5.0]
        # a job falls due: the leader's promotion does work, so the beat is short again
        new = NewJob(id="j1", task="t", queue="q", payload=b"[[],{}]", delay_s=1.0)
        await backend.enqueue(EnqueueParams(jobs=[new]))
        clock.now += 2
        assert upkeep._next_pause(await upkeep.run_once()) == 1.0
        service.seconds = 3.0  # a cron run due in 3 s: tick then, not at the idle pace
        assert upkeep._next_pause(await upkeep.run_once()) == 2.0
        assert upkeep._next_pause(await upkeep.run_once()) == 3.0

    asyncio.run(scenario())


def test_the_leader_lock_outlives_three_idle_pauses() -> None:
    upkeep = Maintenance(
        memory_backend("memory://"), owner="w1", max_crashes=3, retention_s=60, interval_s=1.0,
        idle_interval_s=5.0,
    )  # fmt: skip
    assert upkeep._lock.ttl_s == 15.0


class Boom:
    """A leader service that fails every tick, as a batch callback the store refused did."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def tick(self, backend: object, now_s: float) -> float | None:
        raise self.error


class Counting:
    def __init__(self) -> None:
        self.ticks = 0

    async def tick(self, backend: object, now_s: float) -> float | None:
        self.ticks += 1
        return None


def test_a_failing_leader_service_is_logged_by_name_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        clock = Clock()
        backend = memory_backend("memory://", clock=clock)
        later = Counting()
        services: list[LeaderService] = [
            Boom(RuntimeError("callback too large")),
            Boom(BackendError("gone")),
            later,
        ]
        upkeep = Maintenance(backend, owner="w1", max_crashes=3, retention_s=60,
                             services=services)  # fmt: skip
        due = NewJob(id="j1", task="t", queue="q", payload=b"[[],{}]", delay_s=1.0)
        await backend.enqueue(EnqueueParams(jobs=[due]))
        clock.now += 2
        with caplog.at_level(logging.ERROR, logger="offload.worker"):
            assert await upkeep.run_once() == 1.0  # a failed service asks for a soon tick
        assert later.ticks == 1
        (job,) = await backend.get(IdsParams(ids=["j1"]))
        assert job.state is JobState.QUEUED  # promoted all the same
        text = caplog.text
        assert "Boom failed (RuntimeError: callback too large)" in text
        assert "Boom skipped, the store did not answer: gone" in text

    asyncio.run(scenario())


class SmallValues(MemoryStore):
    """A store that cannot hold a payload over 1 KB (as a store refuses a value too large)."""

    def enqueue(self, params: EnqueueParams) -> list[JobRecord]:
        if any(len(new.payload) > 1000 for new in params.jobs):
            raise ValueRejected("payload too large for this store")
        return super().enqueue(params)
