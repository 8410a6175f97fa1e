"""Pages as HTML: the Jinja2 templates, what every page is given, the security headers,
and errors (a missing job, a bad filter, a store that is down) as pages a person can
act on rather than JSON."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import msgspec
from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, select_autoescape

from offload.backends.base import BackendError
from offload.errors import ConfigurationError, CountChanged, InvalidQuery, JobNotFound
from offload.web.dashboard.session import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Keys,
    LoginNeeded,
    Viewer,
    csrf_nonce,
    set_cookie,
)
from offload.web.dashboard.shared import SharedReads

if TYPE_CHECKING:
    from offload.web.deps import WebSettings

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_CSRF_COOKIE_S = 30 * 24 * 3600
log = logging.getLogger("offload.dashboard")


def _when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _duration(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "—"
    if seconds == math.inf:
        return "over an hour"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _ms(value: float | None) -> str:
    return "—" if value is None else _duration(value / 1000)


def _pretty(value: Any) -> str:
    """JSON for people: indented, non-ASCII kept (the template escapes it)."""
    try:
        return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
    except (TypeError, msgspec.EncodeError):
        return repr(value)


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("offload.web.dashboard", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, iso=_iso, duration=_duration, ms=_ms, pretty=_pretty)
    return env


@dataclass
class Dashboard:
    """What every page needs: the server's settings, the signing keys, the templates."""

    web: WebSettings
    keys: Keys
    env: Environment
    outbox: bool = False
    #: The overview's counts, shared by every page of this process.
    shared: SharedReads | None = None
    #: Password checks at once in this process: each holds ~64 MB for ~50 ms.
    login_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))

    def __post_init__(self) -> None:
        if self.shared is None:
            self.shared = SharedReads(self.web.app.admin.aio)

    async def page(self, request: Request, template: str, viewer: Viewer | None,
                   status: int = 200, **context: Any) -> HTMLResponse:  # fmt: skip
        """``template`` rendered for ``viewer``; a live region's htmx request gets only its
        fragment (the template's ``partial`` if given)."""
        partial = context.pop("partial", None)
        nonce, new = csrf_nonce(request)
        context.update(
            viewer=viewer, outbox=self.outbox,
            csrf=await self.keys.csrf_token(nonce, request.cookies.get(SESSION_COOKIE, "")),
            path=request.url.path, auth=self.web.auth,
            done=await self.keys.read_notice(request.query_params.get("done", "")[:1000]),
        )  # fmt: skip
        fragment = request.headers.get("hx-request") == "true" and partial is not None
        html = self.env.get_template(partial if fragment else template).render(context)
        response = HTMLResponse(html, status_code=status)
        if new:
            set_cookie(response, request, CSRF_COOKIE, nonce, _CSRF_COOKIE_S)
        return response

    async def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        return await self.page(request, "error.html", None, status=status, status_code=status,
                               message=message)  # fmt: skip


def harden(response: Response) -> Response:
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ())[1:]) or "the request"
        parts.append(f"{where}: {error.get('msg', 'not valid')}")
    return "; ".join(parts) or "the request is not valid"


class PageRoute(APIRoute):
    """A dashboard route: its errors are pages, a missing login is the login page, and
    every answer carries the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            board: Dashboard = request.app.state.dashboard
            try:
                response = await original(request)
            except LoginNeeded:
                target = quote(str(request.url.path) + ("?" + request.url.query
                               if request.url.query else ""), safe="")  # fmt: skip
                if request.headers.get("hx-request") == "true":
                    response = Response(status_code=204, headers={"HX-Redirect": "/login"})
                else:
                    response = RedirectResponse(f"/login?next={target}", status_code=303)
            except HTTPException as exc:
                response = await board.error(request, exc.status_code, str(exc.detail))
            except RequestValidationError as exc:
                response = await board.error(request, 400, _validation_message(exc))
            except (JobNotFound, LookupError) as exc:
                what = str(exc).strip("'\"")
                response = await board.error(request, 404, f"not found: {what}")
            except CountChanged as exc:
                response = await board.error(request, 409, str(exc))
            except (InvalidQuery, ConfigurationError, ValueError, TypeError) as exc:
                response = await board.error(request, 400, str(exc))
            except BackendError as exc:  # its text may name the store's host: logged only
                log.warning("dashboard %s: the job store did not answer: %s", request.url.path, exc)
                response = await board.error(
                    request, 503, "the job store did not answer; try again shortly"
                )
            return harden(response)

        return handler
