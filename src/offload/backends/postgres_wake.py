"""PostgreSQL wake-ups: idle workers sleep until a NOTIFY for one of their queues (on a
LISTEN connection of the backend's own, shared by all its waiters), the next due job, or
their timeout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

import psycopg
from psycopg import sql as pgsql

from offload.backends.base import WaitParams
from offload.backends.postgres_deadline import (
    LISTEN_CHECK_S,
    LISTEN_PING_S,
    SilentConnection,
    guarded,
)
from offload.backends.postgres_plans import Plan, Statements, plan_next_ready
from offload.backends.postgres_sync import _connection_kwargs
from offload.backends.postgres_url import PgConfig

log = logging.getLogger("offload.postgres")

T = TypeVar("T")


class _Waiter:
    __slots__ = ("event", "queues")

    def __init__(self, queues: Sequence[str]) -> None:
        self.queues = frozenset(queues)
        self.event = asyncio.Event()


class PgWakeups:
    """The backend's sleeping and waking (a mixin of ``PostgresBackend``)."""

    config: PgConfig
    st: Statements
    _waiters: set[_Waiter]
    _listener: asyncio.Task[None] | None
    _listening: asyncio.Event

    if TYPE_CHECKING:

        async def run(self, plan: Plan[T], *, atomic: bool = False) -> T: ...
        async def _drain(self) -> None: ...

    async def _sleep(self, params: WaitParams) -> None:
        """Sleep until a NOTIFY for one of ``queues``, the next due job, or the timeout."""
        waiter = _Waiter(params.queues)
        self._waiters.add(waiter)
        try:
            if self.config.listen:
                self._ensure_listener()
                # Check for work only once LISTEN is active, so no NOTIFY falls in between.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(params.timeout_s):
                        await self._listening.wait()
            next_ready, now = await self.run(plan_next_ready(self.st, params.queues))
            if next_ready is not None and next_ready <= now:
                return
            timeout_s = params.timeout_s
            if not self.config.listen:
                timeout_s = min(timeout_s, self.config.poll_s)
            if next_ready is not None:
                timeout_s = min(timeout_s, next_ready - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(timeout_s, 0.0)):
                    await waiter.event.wait()
        finally:
            self._waiters.discard(waiter)

    def _wake(self, queue: str | None) -> None:
        for waiter in list(self._waiters):
            if queue is None or queue in waiter.queues:
                waiter.event.set()

    def _ensure_listener(self) -> None:
        loop = asyncio.get_running_loop()
        if self._listener is None or self._listener.done() or self._listener.get_loop() is not loop:
            self._listening = asyncio.Event()
            self._listener = loop.create_task(self._listen_forever(), name="offload-pg-listen")

    async def _listen_forever(self) -> None:
        failures = 0
        listen = pgsql.SQL("LISTEN {}").format(pgsql.Identifier(self.st.channel))
        kwargs = _connection_kwargs(self.config)
        ping_s = min(LISTEN_PING_S, self.config.timeout_s)
        check_s = min(LISTEN_CHECK_S, self.config.timeout_s)
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.config.conninfo, **kwargs)
                async with conn:
                    await guarded(conn, conn.execute(listen), ping_s)
                    if failures:
                        log.warning("PostgreSQL is reachable again; listening for new jobs")
                        self._wake(None)  # anything may have arrived while we were away
                    failures = 0
                    self._listening.set()
                    while True:  # a round trip now and then: a silent connection hears nothing
                        async for notify in conn.notifies(timeout=check_s):
                            self._wake(notify.payload)
                        await guarded(conn, conn.execute("SELECT 1"), ping_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, SilentConnection):
                    await self._drain()
                self._listening.clear()
                failures += 1
                pause_s = min(5.0, 0.1 * 2**failures)
                log.error(
                    "PostgreSQL is unreachable (%s); reconnecting in %.1fs",
                    str(exc).strip() or type(exc).__name__, pause_s,
                )  # fmt: skip
                self._wake(None)
                await asyncio.sleep(pause_s)
