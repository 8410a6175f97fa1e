"""Backend conformance: marks, the named values leader services advance with compare-and-set.

A cron leader stores the last due time it handled; when leadership changes hands
(or two leaders briefly overlap) the compare-and-set is what keeps a due time
from being enqueued twice, so "exactly one writer wins" is tested under a race.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from conformance_helpers import FakeClock

from offload.backends.base import Backend, MarkNamesParams, MarkParams


async def set_mark(backend: Backend, name: str, value: str, expected: str | None = None) -> bool:
    return await backend.set_mark(MarkParams(name=name, value=value, expected=expected))


async def get_marks(backend: Backend, *names: str) -> dict[str, str]:
    return await backend.get_marks(MarkNamesParams(names=list(names)))


@asynccontextmanager
async def same_store_clients(
    backend: Backend, backend_name: str, clock: FakeClock
) -> AsyncIterator[list[Backend]]:
    """The backend, plus a second client of the same store where the store is shared (as
    another process would open it), so that a race also runs across connections."""
    other: Backend | None = None
    if backend_name == "sqlite":
        from offload.backends.sqlite import SqliteStore
        from offload.backends.store import ThreadedBackend

        assert isinstance(backend, ThreadedBackend) and isinstance(backend.store, SqliteStore)
        other = ThreadedBackend(SqliteStore(backend.store.path, clock=clock.time))
    elif backend_name == "postgres":
        from offload.backends.postgres import PostgresBackend

        assert isinstance(backend, PostgresBackend)
        other = PostgresBackend(backend.config, clock=clock.time)
    elif backend_name == "redis":
        from offload.backends.redis import RedisBackend

        assert isinstance(backend, RedisBackend)
        other = RedisBackend(backend.config, clock=clock.time)
    try:
        yield [backend] if other is None else [backend, other]
    finally:
        if other is not None:
            await other.close()


async def test_create_only_when_the_mark_does_not_exist(backend: Backend) -> None:
    assert await get_marks(backend, "cron:nightly") == {}
    assert await set_mark(backend, "cron:nightly", "100") is True
    assert await get_marks(backend, "cron:nightly") == {"cron:nightly": "100"}

    assert await set_mark(backend, "cron:nightly", "200") is False  # it exists now
    assert await get_marks(backend, "cron:nightly") == {"cron:nightly": "100"}


async def test_update_only_from_the_expected_value(backend: Backend) -> None:
    assert await set_mark(backend, "m", "1")
    assert await set_mark(backend, "m", "2", expected="1") is True
    assert await get_marks(backend, "m") == {"m": "2"}

    assert await set_mark(backend, "m", "3", expected="1") is False  # stale: another moved it
    assert await get_marks(backend, "m") == {"m": "2"}
    assert await set_mark(backend, "m", "2", expected="2") is True  # same value is fine


async def test_update_of_a_missing_mark_creates_nothing(backend: Backend) -> None:
    assert await set_mark(backend, "ghost", "1", expected="0") is False
    assert await get_marks(backend, "ghost") == {}
    assert await set_mark(backend, "empty", "x", expected="") is False  # '' is not None
    assert await get_marks(backend, "empty") == {}


async def test_get_marks_returns_only_the_existing_names(backend: Backend) -> None:
    assert await get_marks(backend) == {}
    await set_mark(backend, "a", "1")
    await set_mark(backend, "b", "")
    await set_mark(backend, "c", "3")
    assert await get_marks(backend, "a", "missing", "b") == {"a": "1", "b": ""}
    assert await get_marks(backend, "c", "c") == {"c": "3"}
    assert await get_marks(backend, "missing") == {}


async def test_blocking_facade_sees_the_same_marks(backend: Backend) -> None:
    await set_mark(backend, "a", "1")
    await set_mark(backend, "b", "2")
    names = MarkNamesParams(names=["a", "b", "nope"])
    from_sync = await asyncio.to_thread(backend.blocking.get_marks, names)
    assert from_sync == await backend.get_marks(names) == {"a": "1", "b": "2"}
    await set_mark(backend, "a", "9", expected="1")
    assert await asyncio.to_thread(backend.blocking.get_marks, names) == {"a": "9", "b": "2"}


async def test_values_round_trip_unicode_and_a_kilobyte(backend: Backend) -> None:
    name = "cron:rapport-été:日次"
    first = "2026-01-01T00:00:00+00:00 ✓ " + "é😀" * 300
    second = "ß" * 1024 + "\n\t\"'\\ {}[]"
    assert len(first.encode()) > 1000
    assert await set_mark(backend, name, first)
    assert await get_marks(backend, name) == {name: first}
    assert await set_mark(backend, name, second, expected=first)
    assert await get_marks(backend, name) == {name: second}
    assert await set_mark(backend, name, "x", expected=first) is False
    from_sync = await asyncio.to_thread(backend.blocking.get_marks, MarkNamesParams(names=[name]))
    assert from_sync == {name: second}


async def test_racing_creates_let_exactly_one_win(
    backend: Backend, backend_name: str, clock: FakeClock
) -> None:
    async with same_store_clients(backend, backend_name, clock) as clients:
        contenders = [(c, f"leader-{i}-{n}") for i, c in enumerate(clients) for n in range(6)]
        won = await asyncio.gather(*(set_mark(c, "race", v) for c, v in contenders))
        assert sum(won) == 1
        winner = next(v for (_, v), ok in zip(contenders, won, strict=True) if ok)
        for client in clients:
            assert await get_marks(client, "race") == {"race": winner}


async def test_racing_updates_let_exactly_one_win(
    backend: Backend, backend_name: str, clock: FakeClock
) -> None:
    assert await set_mark(backend, "due", "100")
    expected = "100"
    async with same_store_clients(backend, backend_name, clock) as clients:
        for round_ in (1, 2):  # the second round starts from what the first one stored
            contenders = [(c, f"{round_}-{i}-{n}") for i, c in enumerate(clients) for n in range(6)]
            won = await asyncio.gather(
                *(set_mark(c, "due", v, expected=expected) for c, v in contenders)
            )
            assert sum(won) == 1
            expected = next(v for (_, v), ok in zip(contenders, won, strict=True) if ok)
            for client in clients:
                assert await get_marks(client, "due") == {"due": expected}
