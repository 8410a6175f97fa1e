"""The fault suite's table (printed once at the end of the session) and the servers it breaks."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Row, format_table

from servers import PostgresServer, RedisServer

TABLE = pytest.StashKey[list[Row]]()


@pytest.fixture
def fault_table(request: pytest.FixtureRequest) -> list[Row]:
    """Rows of the table; each scenario appends its own before its assertions."""
    stash = request.config.stash
    if TABLE not in stash:
        stash[TABLE] = []
    return stash[TABLE]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    rows = config.stash.get(TABLE, [])
    if rows:
        terminalreporter.section("fault table: store x fault -> jobs, lost, stuck, run twice")
        terminalreporter.write_line(format_table(rows))


@pytest.fixture(scope="session")
def restartable_postgres() -> Iterator[PostgresServer]:
    """A cluster of the fault suite's own: restarting the shared one would break other tests."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def restartable_redis() -> Iterator[RedisServer]:
    """A redis-server that persists every write (AOF, fsync always), so a restart loses nothing."""
    server = RedisServer("--appendonly", "yes", "--appendfsync", "always").start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs, so a test can fill the disk under SQLite (root only)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("filling a disk needs a tmpfs mount, which needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        with contextlib.suppress(OSError):
            subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fresh_postgres_url(server: PostgresServer, database: str) -> str:
    return f"{server.url(database)}?schema=f_{uuid.uuid4().hex[:10]}"
