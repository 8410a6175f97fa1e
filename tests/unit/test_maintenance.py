"""The leader's upkeep backs off when there is nothing to do, and comes back when there is."""

from __future__ import annotations

import asyncio

from offload.backends.base import EnqueueParams
from offload.backends.memory import memory_backend
from offload.records import NewJob
from offload.worker.maintenance import Maintenance


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
