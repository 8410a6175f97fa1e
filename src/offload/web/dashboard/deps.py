"""What every dashboard route asks for: the dashboard, and who is looking."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from offload.web.dashboard.render import Dashboard
from offload.web.dashboard.session import LoginNeeded, Viewer, check_csrf, viewer_of


def dashboard(request: Request) -> Dashboard:
    found: Dashboard = request.app.state.dashboard
    return found


Board = Annotated[Dashboard, Depends(dashboard)]


async def signed_in(request: Request, board: Board) -> Viewer:
    found = await viewer_of(request, board.web, board.keys)
    if found is None:
        raise LoginNeeded
    return found


Who = Annotated[Viewer, Depends(signed_in)]


def require_staff(viewer: Viewer) -> None:
    """Queues, workers and schedules are everyone's: a page for operators and admins.
    Another page is "not found" rather than "forbidden", as another owner's job is."""
    if not viewer.is_staff:
        raise HTTPException(404, "this page is for operators and admins")


def require_action(viewer: Viewer) -> None:
    if not viewer.can_act:
        raise HTTPException(403, f"a {viewer.role.value} can look but not act")


async def form(request: Request, board: Dashboard) -> dict[str, list[str]]:
    """A state-changing form's fields, once its CSRF token is checked."""
    from urllib.parse import parse_qs

    body = (await request.body()).decode("utf-8", "replace")
    fields = parse_qs(body, keep_blank_values=True, max_num_fields=100)
    await check_csrf(request, board.keys, one(fields, "csrf") or None)
    return fields


def one(fields: dict[str, list[str]], name: str, default: str = "") -> str:
    values = fields.get(name)
    return values[0] if values else default
