"""Live events on Redis: every script PUBLISHes its step's events (one JSON array) on the
prefix's channel, and the control kinds on the control channel too; a subscriber reads
one of them on a connection of its own.

Pub/sub keeps nothing: a subscriber hears the steps taken while it is subscribed, and a
lost connection loses what was published meanwhile, so the stream ends (BackendError)
rather than reconnecting quietly; the caller subscribes again and re-reads the state.
A connection gone silent (no reset ever comes) is found by a PING after PING_IDLE_S
without a message, unanswered within PONG_WAIT_S. Redis itself cuts a subscriber that
falls too far behind (``client-output-buffer-limit pubsub``): that ends the stream too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import redis.asyncio
import redis.exceptions

from offload.backends.base import BackendError
from offload.backends.event_wire import decode_events
from offload.backends.redis_config import COMMAND_TIMEOUT_S, RedisConfig, async_client
from offload.backends.redis_errors import detail, translate, unreachable
from offload.records import EventKind, JobEvent

#: A subscription that heard nothing this long asks the server whether it is still there.
PING_IDLE_S = 5.0
#: How long the server has to answer that PING before the connection is given up.
PONG_WAIT_S = 5.0
#: How long closing the connection may take (a silent one would hold the caller).
CLOSE_S = 2.0


class RedisEventStream:
    """``EventStream`` over a pub/sub connection of its own (see the module's docstring)."""

    def __init__(
        self, config: RedisConfig, channel: str, kinds: frozenset[EventKind] = frozenset()
    ) -> None:
        self._config = config
        self._channel = channel
        self._kinds = kinds
        self._client: redis.asyncio.Redis | None = None
        self._conn: Any = None  # redis.asyncio.Connection, subscribed

    async def __aenter__(self) -> RedisEventStream:
        """Return once Redis confirmed the subscription: every later step is heard."""
        self._client = async_client(self._config)
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                pool = self._client.connection_pool
                self._conn = await pool.get_connection()  # type: ignore[no-untyped-call]
                await self._conn.send_command("SUBSCRIBE", self._channel)
                while True:
                    reply = await self._conn.read_response(
                        disconnect_on_error=False, push_request=True
                    )
                    if _kind(reply) == b"subscribe":
                        break
        except BaseException as exc:
            await self._close()
            if isinstance(exc, TimeoutError | redis.exceptions.RedisError | OSError):
                raise unreachable(exc) from exc
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    def __aiter__(self) -> AsyncIterator[list[JobEvent]]:
        return self._steps()

    async def _steps(self) -> AsyncIterator[list[JobEvent]]:
        if self._conn is None:
            raise BackendError("the event stream is not open (use it in `async with`)")
        pinged = False
        while True:
            try:
                reply = await self._read(PONG_WAIT_S if pinged else PING_IDLE_S)
                if reply is None:  # silence: is the server still there?
                    if pinged:
                        raise redis.exceptions.TimeoutError(
                            f"no answer to a PING within {PONG_WAIT_S:g} s"
                        )
                    async with asyncio.timeout(PONG_WAIT_S):
                        await self._conn.send_command("PING")
                    pinged = True
                    continue
            except Exception as exc:
                await self._close()
                raise _ended(exc) from exc
            pinged = False
            if _kind(reply) == b"message":
                events = decode_events(reply[2])
                if self._kinds:
                    events = [e for e in events if e.kind in self._kinds]
                if events:
                    yield events

    async def _read(self, timeout_s: float) -> Any:
        """The next reply, or None after ``timeout_s`` of silence (the connection kept)."""
        if self._conn is None:
            raise redis.exceptions.ConnectionError("the event stream was closed")
        return await self._conn.read_response(
            timeout=timeout_s, disconnect_on_error=False, push_request=True
        )

    async def _close(self) -> None:
        conn, client = self._conn, self._client
        self._conn = self._client = None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.disconnect(nowait=True), CLOSE_S)
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), CLOSE_S)


def _ended(exc: Exception) -> BackendError:
    translated = translate(exc)
    if isinstance(translated, BackendError):
        return translated
    return BackendError(f"the Redis event stream failed: {detail(exc)}")


def _kind(reply: Any) -> bytes | None:
    """A pub/sub reply's type: b'message', b'subscribe', b'pong' (None for anything else)."""
    if isinstance(reply, list) and reply and isinstance(reply[0], bytes):
        return reply[0].lower()
    return None
