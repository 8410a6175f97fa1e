"""Servers shared by the whole run: started on first use, on free ports, then removed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from servers import PostgresServer


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
