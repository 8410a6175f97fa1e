"""Deadlines for PostgreSQL calls: a connection gone silent is cut, never waited on.

A partition that drops packets without a reset (a failover, a NAT entry dropped, a host
gone) leaves a socket that neither answers nor closes: libpq would wait on it forever,
keepalives do not fire while something on the path still ACKs, and psycopg's answer to a
cancelled call (a cancel request on a new connection, then a wait for the server) needs
the very network that is gone. So a call that outlives its deadline, or whose caller is
cancelled, has its socket shut down as a reset would: libpq sees the connection closed at
once, the call fails, and the connection is closed so that its pool discards it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import psycopg

from offload.backends.base import BackendError

T = TypeVar("T")

#: How long a call whose socket was shut down gets to notice (libpq sees EOF at once).
CUT_GRACE_S = 2.0
#: How often the blocking client's watchdog looks at its calls while some are in flight.
WATCH_EVERY_S = 0.5
#: How often (at most; at least every ``timeout_s``) a LISTEN connection proves it still
#: answers (a NOTIFY lost to a silent partition would leave idle workers asleep and a
#: subscriber waiting for nothing), and how long it has to answer.
LISTEN_CHECK_S = 10.0
LISTEN_PING_S = 5.0


class SilentConnection(BackendError):
    """PostgreSQL did not answer within the deadline; the connection was dropped."""

    def __init__(self, deadline_s: float) -> None:
        super().__init__(
            f"PostgreSQL did not answer within {deadline_s:g}s (a network partition or an "
            "overloaded server); the connection was dropped"
        )


def sever(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Shut ``conn``'s socket down both ways, leaving its descriptor to libpq (closing it
    under a pending wait could hand the number to another socket): a call blocked on it
    wakes and fails as after a reset."""
    try:
        fd = conn.pgconn.socket
    except psycopg.Error:  # closed already
        return
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


async def guarded(conn: psycopg.AsyncConnection[Any], call: Awaitable[T], deadline_s: float) -> T:
    """Await ``call`` (which uses ``conn``) for at most ``deadline_s``. Past it, or when the
    caller is cancelled, cut ``conn`` first, so that neither waits on a silent network;
    the deadline raises ``SilentConnection``."""
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait((task,), timeout=deadline_s)
    except asyncio.CancelledError:
        await _cut(conn, task)
        raise
    if not done:
        await _cut(conn, task)
        raise SilentConnection(deadline_s)
    return task.result()


async def _cut(conn: psycopg.AsyncConnection[Any], task: asyncio.Future[Any]) -> None:
    sever(conn)
    try:
        await asyncio.wait((task,), timeout=CUT_GRACE_S)
    finally:
        if task.done():
            if not task.cancelled():
                task.exception()  # retrieved: the caller reports the cut, not the driver's words
            await conn.close()  # closed: the pool discards it rather than lend it again
        else:  # still busy on a shut socket: the pool closes a connection returned ACTIVE
            task.add_done_callback(lambda t: t.cancelled() or t.exception())


class _Armed:
    __slots__ = ("conn", "fired", "until")

    def __init__(self, conn: psycopg.Connection[Any], until: float) -> None:
        self.conn = conn
        self.until = until
        self.fired = False


class Watchdog:
    """Deadlines for the blocking client: one daemon thread cuts the connections whose
    call outlived its deadline. It sleeps while no call is in flight."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: set[_Armed] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextlib.contextmanager
    def deadline(self, conn: psycopg.Connection[Any], deadline_s: float) -> Iterator[None]:
        """Run the block's calls on ``conn`` for at most ``deadline_s``; past it ``conn``
        is cut, closed, and the block raises ``SilentConnection``."""
        armed = _Armed(conn, time.monotonic() + deadline_s)
        with self._cond:
            if not self._armed:
                self._cond.notify()
            self._armed.add(armed)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._watch, name="offload-pg-deadlines", daemon=True
                )
                self._thread.start()
        try:
            yield
        except psycopg.Error as exc:
            if armed.fired:
                raise SilentConnection(deadline_s) from exc
            raise
        finally:
            with self._cond:
                self._armed.discard(armed)
            if armed.fired:
                conn.close()  # the pool discards a closed connection

    def close(self) -> None:
        """End the thread (calls still in flight keep no deadline)."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _watch(self) -> None:
        while True:
            with self._cond:
                while not self._armed and not self._closed:
                    self._cond.wait()
                if self._closed:
                    self._thread = None
                    return
                now = time.monotonic()
                due = [a for a in self._armed if a.until <= now]
                for armed in due:
                    armed.fired = True
                    self._armed.discard(armed)
                if not due:
                    self._cond.wait(WATCH_EVERY_S)
            for armed in due:
                sever(armed.conn)
