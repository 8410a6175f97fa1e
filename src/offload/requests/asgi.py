"""The one-minute rule for ASGI applications (FastAPI, Starlette, ...).

A request's time runs from the call until its last body message has been sent (a
streamed response included), or until the application returns or raises without one;
work a framework runs after the response (Starlette's background tasks) is not the
client's wait and is not counted. An event stream (``text/event-stream``) is not a
synchronous request but a subscription a client keeps open on purpose, so it is left
out, as are websockets. The lifespan's shutdown writes the last counts.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from offload.requests.timer import DEFAULT_FLUSH_EVERY_S, DEFAULT_THRESHOLD_S, RequestTimer

if TYPE_CHECKING:
    from offload.app import Offload

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

EVENT_STREAM = b"text/event-stream"


def is_event_stream(content_type: bytes | None) -> bool:
    return content_type is not None and content_type.split(b";")[0].strip().lower() == EVENT_STREAM


def _content_type(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value
    return None


def route_of(scope: Scope) -> str:
    """The route's template if the router named one (FastAPI, Starlette), else the path."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str) and not hasattr(route, "routes"):  # a Mount is a prefix
        return str(scope.get("root_path", "")) + template
    return str(scope.get("path", ""))


class RequestTimingASGI:
    """Wraps an ASGI application: counts its requests, and those over ``threshold_s``.

    ``RequestTimingASGI(app, offload_app, name="shop")``, or
    ``fastapi_app.add_middleware(RequestTimingASGI, offload_app=offload_app, name="shop")``.
    The counts go to ``offload_app``'s store under ``name`` (one name, one threshold).
    """

    def __init__(
        self, app: ASGIApp, offload_app: Offload, *, name: str = "web",
        threshold_s: float = DEFAULT_THRESHOLD_S, flush_every_s: float = DEFAULT_FLUSH_EVERY_S,
    ) -> None:  # fmt: skip
        self.app = app
        self.timer = RequestTimer(
            offload_app, name=name, threshold_s=threshold_s, flush_every_s=flush_every_s
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.app(scope, self._lifespan(receive), send)
        else:  # a websocket is not a request-reply
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        timer = self.timer
        timer.started_async()
        started = time.perf_counter()
        counted = False
        stream = False

        def count() -> None:
            nonlocal counted
            if not counted:
                counted = True
                if not stream:
                    timer.record(time.perf_counter() - started, str(scope.get("method", "")),
                                 route_of(scope))  # fmt: skip

        async def timed_send(message: Message) -> None:
            nonlocal stream
            kind = message["type"]
            if kind == "http.response.start":
                stream = is_event_stream(_content_type(message.get("headers", ())))
            await send(message)
            if kind == "http.response.pathsend" or (
                kind == "http.response.body" and not message.get("more_body", False)
            ):
                count()

        try:
            await self.app(scope, receive, timed_send)
        finally:  # no last body: returned early, raised, or the client went away
            count()

    def _lifespan(self, receive: Receive) -> Receive:
        async def shutting_down() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.timer.aclose()  # before the application closes its store
            return message

        return shutting_down

    def close(self) -> bool:
        """Write the last counts (a server without lifespan events; else at exit)."""
        return self.timer.close()
