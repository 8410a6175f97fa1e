"""Fixtures for the backend conformance suite: every test runs once per backend.

To plug in another engine, add an async factory to ``BACKEND_FACTORIES``: it
gets the fake clock (pass ``clock.time`` as the backend's clock) and a fresh
temporary folder, and returns an open ``Backend``. The fixture closes it after
the test.

Async tests (``async def test_...``) run on one ``asyncio.Runner`` per test,
the same loop that opened the backend and that closes it, so engines whose
connections belong to a loop (asyncpg, redis.asyncio) work unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from conformance_helpers import FakeClock

from offload.backends.base import Backend
from offload.backends.memory import memory_backend
from offload.backends.sqlite import sqlite_backend

BackendFactory = Callable[[FakeClock, Path, pytest.FixtureRequest], Awaitable[Backend]]


async def _memory(clock: FakeClock, tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    return memory_backend("memory://", clock=clock.time)


async def _sqlite(clock: FakeClock, tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    return sqlite_backend("sqlite:///" + str(tmp_path / "offload.db"), clock=clock.time)


async def _postgres(clock: FakeClock, tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    from offload.backends.postgres import postgres_backend

    url = request.getfixturevalue("postgres_url")  # a fresh schema on the test cluster
    return postgres_backend(url, clock=clock.time)


async def _redis(clock: FakeClock, tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    from offload.backends.redis import redis_backend

    url = request.getfixturevalue("redis_url")  # a fresh key prefix on the test server
    return redis_backend(url, clock=clock.time)


#: name -> factory
BACKEND_FACTORIES: dict[str, BackendFactory] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "postgres": _postgres,
    "redis": _redis,
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as r:
        yield r


@pytest.fixture(params=list(BACKEND_FACTORIES))
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(
    backend_name: str,
    runner: asyncio.Runner,
    clock: FakeClock,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Backend]:
    opened = runner.run(BACKEND_FACTORIES[backend_name](clock, tmp_path, request))
    try:
        yield opened
    finally:
        runner.run(opened.close())


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests on the test's runner (no pytest-asyncio needed)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    wanted = inspect.signature(pyfuncitem.obj).parameters
    kwargs = {name: pyfuncitem.funcargs[name] for name in wanted}
    runner = pyfuncitem.funcargs.get("runner")
    if isinstance(runner, asyncio.Runner):
        runner.run(pyfuncitem.obj(**kwargs))
    else:
        asyncio.run(pyfuncitem.obj(**kwargs))
    return True
