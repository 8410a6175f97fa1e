"""PostgreSQL's live events: LISTEN on a connection of the subscriber's own.

Every step NOTIFYs its events in its own transaction (queries.sql), on a channel named
after the schema, so two schemas sharing a database never see each other's events and a
step that rolls back pushes nothing. A notification is delivered to the connections
LISTENing when it commits, so a subscriber misses nothing from the moment ``LISTEN``
returns. A step too big for one notification (8000 bytes) arrives as a few consecutive
lists, an event's message is cut at 1,000 characters, and an event that alone would not
fit is left out. While no stream is subscribed, steps build and send no events at all:
each stream holds a shared advisory lock that the steps look for (``LISTENED`` in
postgres_exprs.py). A subscription to control kinds only (every worker's) neither holds
the lock nor hears the busy channel: it listens on the control channel, which the rare
steps that make those kinds (a person's cancel or delete, a publish) push to always, so
a busy worker's steps build no events unless a person subscribes. Kinds are filtered here.
"""

from __future__ import annotations

import collections
import time
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql as pgsql

from offload.backends.base import BackendError
from offload.backends.event_wire import decode_events
from offload.backends.postgres_deadline import LISTEN_CHECK_S, LISTEN_PING_S, guarded
from offload.backends.postgres_errors import _fail, _unreachable
from offload.backends.postgres_sync import _connection_kwargs
from offload.backends.postgres_url import PgConfig
from offload.records import CONTROL_KINDS, EventKind, JobEvent


class PgEventStream:
    """``EventStream`` over LISTEN. A connection quiet for ``LISTEN_CHECK_S`` (at most the
    URL's ``timeout_s``) must answer a ping within ``LISTEN_PING_S``: a silent partition
    ends the iteration with ``BackendError`` like a closed connection, never a hang."""

    def __init__(
        self, config: PgConfig, channel: str, listened: int | None,
        kinds: frozenset[EventKind] = frozenset(),
    ) -> None:  # fmt: skip
        """``listened``: the lock a full subscriber holds (None for the control channel);
        ``kinds``: only these (empty: every kind)."""
        self._config = config
        self._channel = channel
        self._listened = listened
        self._kinds = kinds
        self._conn: psycopg.AsyncConnection[Any] | None = None
        #: Steps received and not yet handed out: they outlive any one iterator.
        self._ready: collections.deque[list[JobEvent]] = collections.deque()
        self._heard_at = 0.0  # monotonic: the connection last proved alive
        self._check_s = min(LISTEN_CHECK_S, config.timeout_s)
        self._ping_s = min(LISTEN_PING_S, config.timeout_s)

    async def __aenter__(self) -> PgEventStream:
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._config.conninfo, **_connection_kwargs(self._config)
            )
        except psycopg.Error as exc:
            raise _unreachable(exc) from exc
        listen = pgsql.SQL("LISTEN {}").format(pgsql.Identifier(self._channel))
        try:
            # steps push only while a subscriber holds this (queries.sql, LISTENED); the
            # connection keeps it until it closes, however it ends
            if self._listened is not None:
                lock = conn.execute("SELECT pg_advisory_lock_shared(%s, 0)", (self._listened,))
                await guarded(conn, lock, self._config.timeout_s)
            await guarded(conn, conn.execute(listen), self._config.timeout_s)
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, psycopg.Error):
                raise _fail(exc) from exc
            raise
        self._conn = conn
        self._heard_at = time.monotonic()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    def __aiter__(self) -> PgEventStream:
        return self

    async def __anext__(self) -> list[JobEvent]:
        while not self._ready:
            await self._receive()
        return self._ready.popleft()

    async def _receive(self) -> None:
        """Wait for notifications until the connection is due to prove itself, then ping."""
        conn = self._conn
        if conn is None:
            raise BackendError("the event stream is closed (use it in `async with`)")
        try:
            wait_s = self._heard_at + self._check_s - time.monotonic()
            if wait_s > 0:
                # consumed whole, so a notification read is never left in a closed generator
                async for notify in conn.notifies(timeout=wait_s, stop_after=1):
                    self._heard_at = time.monotonic()
                    events = decode_events(notify.payload)
                    if self._kinds:
                        events = [e for e in events if e.kind in self._kinds]
                    if events:
                        self._ready.append(events)
                return
            await guarded(conn, conn.execute("SELECT 1"), self._ping_s)
            self._heard_at = time.monotonic()
        except BackendError:
            raise
        except (psycopg.Error, OSError) as exc:
            raise _fail(exc) from exc


def event_stream(
    config: PgConfig, events: str, control: str, listened: int,
    kinds: frozenset[EventKind] = frozenset(),
) -> PgEventStream:  # fmt: skip
    """The stream for ``kinds``: control kinds alone from the control channel, without
    counting as a listener; anything else from the events channel, as one."""
    if kinds and kinds <= CONTROL_KINDS:
        return PgEventStream(config, control, None, kinds)
    return PgEventStream(config, events, listened, kinds)
