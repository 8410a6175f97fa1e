"""The dashboard: every job, live, searchable, with the actions operators need, and each
signed-in submitter's own work. Server-rendered Jinja2 pages made live by htmx and its
SSE extension; the scripts are vendored files (``static/vendor``), no build step, no CDN.

It reads and acts through ``app.admin.aio`` only, within the viewer's owner and role,
exactly as the HTTP API does with a token of that owner and role.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from offload.web.dashboard import actions, pages, stream
from offload.web.dashboard.render import Dashboard, environment, harden
from offload.web.dashboard.session import Keys

if TYPE_CHECKING:
    from fastapi import FastAPI

    from offload.web.deps import WebSettings


def install(api: FastAPI, web: WebSettings, *, outbox: bool = False) -> None:
    """Serve the dashboard from ``api`` at ``/`` (after the API's own routes)."""
    api.state.dashboard = Dashboard(web=web, keys=Keys(web), env=environment(), outbox=outbox)
    static = StaticFiles(packages=[("offload.web.dashboard", "static")])
    api.mount("/static", static, name="static")
    api.include_router(actions.router)
    api.include_router(stream.router)
    api.include_router(pages.router)

    @api.exception_handler(StarletteHTTPException)
    async def unknown_page(request: Request, exc: StarletteHTTPException) -> Response:
        """A person's browser gets a page for a mistyped address; API clients get JSON."""
        wants_page = "text/html" in request.headers.get("accept", "")
        if not wants_page or request.url.path.startswith(("/api/", "/static/")):
            return await http_exception_handler(request, exc)
        board: Dashboard = request.app.state.dashboard
        message = "no page at this address" if exc.status_code == 404 else str(exc.detail)
        return harden(await board.error(request, exc.status_code, message))
