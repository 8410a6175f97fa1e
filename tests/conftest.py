"""Servers shared by the whole run: started on first use, on free ports, then removed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import PostgresServer, RedisServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def postgres_database(postgres_server: PostgresServer) -> str:
    """A fresh database per test module; returns its URL."""
    return postgres_server.url(postgres_server.create_database())


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """A fresh schema per test inside the module's database."""
    return f"{postgres_database}?schema=t_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the run (tests keep apart by key prefix), never the machine's own."""
    server: RedisServer | None = None
    try:
        server = RedisServer().start()
    except RuntimeError as exc:
        problem = str(exc)
    if server is None:  # failed outside the except block: no chained traceback in the report
        pytest.fail(f"cannot start the test Redis: {problem}", pytrace=False)
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def scratch_server() -> Iterator[RedisServer]:
    """A redis-server of the test module's own, so a test may look at every key on it (or
    at every command, with MONITOR)."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A fresh key prefix per test on the shared server."""
    return redis_server.url(prefix=f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store of each kind, for tests that run an app end to end on every store."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/offload.db"
    return str(request.getfixturevalue(f"{request.param}_url"))
