"""The one-minute rule for WSGI applications (Flask, Django, ...).

A request's time runs from the call until the server closes the response body, which it
does once the body is sent, streamed or not, or once the application failed while
producing it. A ``text/event-stream`` response is a subscription, not a synchronous
request, and is left out. A daemon thread writes the counts; ``close()`` or the
interpreter's exit writes the last ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from offload.requests.timer import DEFAULT_FLUSH_EVERY_S, DEFAULT_THRESHOLD_S, RequestTimer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from offload.app import Offload


def _is_event_stream(headers: Iterable[tuple[str, str]]) -> bool:
    for name, value in headers:
        if name.lower() == "content-type":
            return value.split(";")[0].strip().lower() == "text/event-stream"
    return False


def route_of(environ: WSGIEnvironment) -> str:
    """Flask's (werkzeug's) matched rule if there is one, else the path without its query."""
    request = environ.get("werkzeug.request")
    rule = getattr(getattr(request, "url_rule", None), "rule", None)
    if isinstance(rule, str):
        return str(environ.get("SCRIPT_NAME", "")) + rule
    return str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))


class _TimedBody:
    """The response body, passed through; its ``close()`` (which the server must call once
    it has sent the body, or given up) ends the request's time."""

    def __init__(self, body: Iterable[bytes], ended: Callable[[], None]) -> None:
        self._body = body
        self._ended = ended

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def __len__(self) -> int:  # a one-chunk list lets the server send a Content-Length
        return len(self._body)  # type: ignore[arg-type]

    def close(self) -> None:
        ended, self._ended = self._ended, _nothing
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            ended()


def _nothing() -> None:
    pass


class RequestTimingWSGI:
    """Wraps a WSGI application: counts its requests, and those over ``threshold_s``.

    ``flask_app.wsgi_app = RequestTimingWSGI(flask_app.wsgi_app, offload_app, name="shop")``;
    for Django, wrap ``get_wsgi_application()``. The counts go to ``offload_app``'s store
    under ``name`` (one name, one threshold).
    """

    def __init__(
        self, app: WSGIApplication, offload_app: Offload, *, name: str = "web",
        threshold_s: float = DEFAULT_THRESHOLD_S, flush_every_s: float = DEFAULT_FLUSH_EVERY_S,
    ) -> None:  # fmt: skip
        self.app = app
        self.timer = RequestTimer(
            offload_app, name=name, threshold_s=threshold_s, flush_every_s=flush_every_s
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        timer = self.timer
        timer.started_sync()
        started = time.perf_counter()
        stream = False

        def timed_start_response(status: str, headers: list[tuple[str, str]],
                                 exc_info: Any = None) -> Callable[[bytes], object]:  # fmt: skip
            nonlocal stream
            stream = _is_event_stream(headers)
            return start_response(status, headers, exc_info)

        def ended() -> None:
            if not stream:
                method = str(environ.get("REQUEST_METHOD", ""))
                timer.record(time.perf_counter() - started, method, route_of(environ))

        try:
            body = self.app(environ, timed_start_response)
        except BaseException:
            ended()
            raise
        return _TimedBody(body, ended)

    def close(self) -> bool:
        """Stop the writer thread and write the last counts (blocking); False if the store
        failed. Without it, the interpreter's exit writes them."""
        return self.timer.close()
