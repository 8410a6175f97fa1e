"""Running totals for counters: the leader folds settled minutes into one mark, a reader
adds the minutes after it, and a total never steps back, whatever is pruned or folded
in between, on every store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from offload import Offload
from offload.admin.totals import SETTLE_S, fold, totals
from offload.backends.base import CountsParams, PruneParams
from offload.ops import run_async
from offload.records import MinuteCounts

START = 1_800_000_000.0  # a minute boundary


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Offload, Clock]]:
    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path}/jobs.db"}.get(
        request.param
    ) or request.getfixturevalue(f"{request.param}_url")
    clock = Clock()
    application = Offload(url, clock=clock)
    yield application, clock
    application.close()


def _row(minute_s: float, source: str, succeeded: int, waits: list[int]) -> MinuteCounts:
    return MinuteCounts(minute=int(minute_s // 60), queue="docs", task="convert", source=source,
                        started=succeeded, succeeded=succeeded, wait_ms=waits)  # fmt: skip


def test_totals_only_go_up_through_folds_and_prunes(app: tuple[Offload, Clock]) -> None:
    application, clock = app
    backend = application.backend

    async def now_totals() -> tuple[int, list[int]]:
        found = await run_async(backend, totals())
        if not found:
            return 0, []
        (total,) = found
        return total.succeeded, total.wait_ms

    async def scenario() -> None:
        assert await run_async(backend, totals()) == []  # nobody has started counting
        assert await run_async(backend, fold()) is True  # counting starts now
        assert await now_totals() == (0, [])
        seen = []
        for step in range(12):  # a row a minute from two workers, folded as minutes settle
            clock.now = START + 60 * step + 30
            await backend.record_counts(CountsParams(ttl_s=86400, rows=[
                _row(clock.now, "w1", 2, [1, 1]), _row(clock.now, "w2", 1, [0, 1])]))  # fmt: skip
            if step % 3 == 0:
                await run_async(backend, fold())
            seen.append(await now_totals())
        assert [s for s, _ in seen] == [3 * (n + 1) for n in range(12)]
        assert seen[-1][1] == [12, 24]
        clock.now += SETTLE_S + 120
        await run_async(backend, fold())
        await backend.prune(PruneParams(finished_before=clock.now, counts_before=clock.now))
        assert await now_totals() == (36, [12, 24]), "folded before the rows were pruned"
        # a late flush of a minute already folded is not counted twice (nor at all)
        late = [_row(START + 30, "w1", 5, [5])]
        await backend.record_counts(CountsParams(ttl_s=86400, rows=late))
        assert await now_totals() == (36, [12, 24])
        await backend.close()

    asyncio.run(scenario())
