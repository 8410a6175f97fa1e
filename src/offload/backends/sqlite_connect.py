"""SQLite connections (one per thread), write transactions, and its errors translated.

Every error the driver raises leaves the store as one of the seam's errors: an id
already stored is ``DuplicateJob``, a value SQLite cannot hold is ``ValueRejected``,
and a database it cannot use right now (locked, out of disk, unreadable) is
``BackendError`` carrying SQLite's own words.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from offload.backends.base import BackendError, DuplicateJob, ValueRejected

F = TypeVar("F", bound=Callable[..., Any])

#: How long a writer waits between tries for the write lock: short, because another
#: process's write transaction lasts a few milliseconds and a drain runs them back to back.
FIRST_RETRY_S = 0.0001
MAX_RETRY_S = 0.001


def translate(exc: BaseException, path: str) -> BaseException:
    """The seam's error for a driver error (``exc`` itself when it is not the driver's)."""
    if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return exc  # a mistake in offload's own statements, not the database's answer
    if isinstance(exc, sqlite3.IntegrityError):
        if "offload_jobs.id" in str(exc):
            return DuplicateJob()
        return ValueRejected(f"the SQLite store cannot hold a value of this call: {exc}")
    if isinstance(exc, UnicodeEncodeError | OverflowError | sqlite3.DataError):
        return ValueRejected(f"the SQLite store cannot hold a value of this call: {exc}")
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
        hint = ""
        if "locked" in str(exc) or "busy" in str(exc):
            hint = "; another process holds its write lock (raise busy_timeout_ms, or stop it)"
        elif "full" in str(exc):
            hint = "; free disk space (nothing of this call was stored)"
        return BackendError(f"SQLite database {path!r}: {exc}{hint}")
    return exc


def translated(method: F) -> F:
    """Translate the driver errors ``method`` raises (see ``translate``)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, UnicodeEncodeError, OverflowError) as exc:
            raise translate(exc, self.path) from exc

    return wrapper  # type: ignore[return-value]


class Connections:
    """One connection per thread on one file, and ``BEGIN IMMEDIATE`` write transactions."""

    def __init__(self, path: str, *, synchronous: str, busy_timeout_ms: int) -> None:
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
            # before anything that may wait for another process's lock
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        except sqlite3.Error as exc:
            raise BackendError(
                f"cannot open the SQLite database {self.path!r}: {exc}; check that its folder "
                "exists and is writable, that no other process holds it locked, or set "
                "OFFLOAD_URL"
            ) from exc
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        conn = self.get()
        self._begin(conn)
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself on some errors (SQLITE_FULL, SQLITE_IOERR): a
            # second ROLLBACK would fail and hide the real error.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def _begin(self, conn: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``, tried again every millisecond at most while another
        process writes. SQLite's own busy wait backs off to 100 ms sleeps: a second
        worker then waited tens of milliseconds for a lock held for two, while the
        first took it again and again (a fifth of a two-worker drain lost waiting)."""
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            deadline = time.monotonic() + self._busy_timeout_ms / 1000
            delay_s = FIRST_RETRY_S
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if not _busy(exc):
                        raise translate(exc, self.path) from exc
                    if time.monotonic() >= deadline:
                        raise BackendError(
                            f"SQLite database {self.path!r} is busy: {exc} (waited "
                            f"{self._busy_timeout_ms} ms); another process holds its write "
                            "lock: stop it, or raise busy_timeout_ms in the URL"
                        ) from exc
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, MAX_RETRY_S)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return bool(code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED))
    return "locked" in str(exc) or "busy" in str(exc)
