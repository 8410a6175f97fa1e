"""SQLite's statements, schema and migrations, and its URLs."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from urllib.parse import parse_qs

from offload.backends.base import BackendError
from offload.backends.sqlfile import load_migrations, load_queries, read_sql
from offload.records import MAX_ATTEMPTS_KEPT

COLUMNS = (
    "id, task, queue, state, payload, priority, attempt, max_attempts, delivery, crashes, "
    "run_at, lease_until, lease_s, timeout_s, worker, progress, progress_message, result, "
    "error, created_at, started_at, finished_at, key, batch, owner, meta, attempts"
)
#: What a job's event carries, in the order ``sqlite_events.event_of_row`` reads.
EVENT_COLUMNS = "id, queue, state, task, owner, batch, attempt, progress, progress_message, worker"


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def _in(sql: str, values: Sequence[object]) -> str:
    """Fill a statement's ``{marks}`` with one placeholder per value of an IN list."""
    return sql.replace("{marks}", _marks(values))


def _load() -> dict[str, str]:
    queries = load_queries("offload.backends", "sqlite_sql/queries.sql")
    push = queries.pop("push_attempt").replace("{max_attempts_kept}", str(MAX_ATTEMPTS_KEPT))
    fragments = {
        "{cols}": COLUMNS,
        "{event}": EVENT_COLUMNS,
        "{push_attempt}": push,
    }
    for name in queries:
        for fragment, text in fragments.items():
            queries[name] = queries[name].replace(fragment, text)
    return queries


Q = _load()


def migrations() -> list[tuple[int, str]]:
    return load_migrations("offload.backends", "sqlite_sql/migrations")


def fresh_schema() -> str:
    return read_sql("offload.backends", "sqlite_sql/schema.sql")


def apply_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the schema; ``PRAGMA user_version`` records the version."""
    steps = migrations()
    latest = steps[-1][0]
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current == 0:
            for statement in _statements(fresh_schema()):
                conn.execute(statement)
        else:
            for version, sql in steps:
                if version > current:
                    for statement in _statements(sql):
                        conn.execute(statement)
        if current > latest:
            raise BackendError(
                f"the database schema is version {current}, newer than this offload "
                f"({latest}); upgrade offload"
            )
        conn.execute(f"PRAGMA user_version = {latest}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back itself (a full disk)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _statements(sql: str) -> Iterator[str]:
    """Split a script into statements so they run inside our transaction."""
    buffer = ""
    for line in sql.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()


def parse_sqlite_url(url: str) -> tuple[str, dict[str, str]]:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db``, optional ``?synchronous=normal``."""
    rest = url.removeprefix("sqlite://")
    rest, _, query = rest.partition("?")
    if rest.removeprefix("/").startswith(":memory:") or "mode=memory" in query:
        raise ValueError(
            f"{url!r} would give each thread of a worker its own empty database: use "
            "memory:// for a store inside one process, or a file (sqlite:///offload.db)"
        )
    if not rest.startswith("/") or rest == "/":
        raise ValueError(
            f"bad SQLite URL {url!r}: write sqlite:///relative/path.db or sqlite:////abs/path.db"
        )
    options = {k: v[-1] for k, v in parse_qs(query).items()}
    unknown = set(options) - {"synchronous", "busy_timeout_ms"}
    if unknown:
        raise ValueError(f"unknown SQLite URL option(s) {sorted(unknown)} in {url!r}")
    if options.get("synchronous", "full").lower() not in {"full", "normal", "extra"}:
        raise ValueError("SQLite option synchronous must be full, normal or extra")
    return rest[1:], options
