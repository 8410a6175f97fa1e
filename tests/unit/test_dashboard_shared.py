"""The overview's shared reads: one fetch at a time, stale while revalidating, forgotten
after an action."""

from __future__ import annotations

import asyncio

import pytest

from offload.web.dashboard import shared
from offload.web.dashboard.shared import Shared


def test_one_fetch_serves_many_and_a_stale_answer_is_refreshed_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    gate = asyncio.Event()

    async def fetch() -> int:
        calls.append(len(calls))
        await gate.wait()
        return len(calls)

    async def scenario() -> None:
        read = Shared(fetch)
        gate.set()
        first = await asyncio.gather(*(read.get() for _ in range(5)))
        assert first == [(1, True)] * 5 and len(calls) == 1  # one fetch for five pages
        assert await read.get() == (1, True)  # fresh: no fetch
        monkeypatch.setattr(shared, "MIN_AGE_S", 0.0)
        monkeypatch.setattr(shared, "AGE_FACTOR", 0.0)
        gate.clear()
        assert await read.get() == (1, False)  # stale at once, a newer one on its way
        assert await read.get() == (1, False)
        await asyncio.sleep(0)
        assert len(calls) == 2  # one refresh for both
        gate.set()
        await asyncio.sleep(0.01)
        assert (await read.get())[0] == 2
        read.forget()
        before = len(calls)
        value, fresh = await read.get()  # after an action: an answer begun after it
        assert fresh and value > before

    asyncio.run(scenario())
