"""What the dashboard changes: logging in and out, retrying, cancelling and deleting a
job or every job a search matches, pausing and resuming a queue. Every one is a POST
with a CSRF token; viewers are refused here whatever their page showed them."""

from __future__ import annotations

import secrets
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from offload.admin import Action
from offload.web.dashboard.deps import Board, Who, form, one, require_action, require_staff
from offload.web.dashboard.query import Search
from offload.web.dashboard.render import Dashboard, PageRoute
from offload.web.dashboard.session import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    local_path,
    session_value,
    set_cookie,
    viewer_of,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)


async def _back(board: Dashboard, to: str, message: str = "") -> RedirectResponse:
    """303 to ``to`` with a notice for the page to show, signed: a link made elsewhere
    cannot put its own words on the dashboard."""
    joiner = "&" if "?" in to else "?"
    signed = await board.keys.sign_notice(message) if message else ""
    target = f"{to}{joiner}done={quote(signed)}" if message else to
    return RedirectResponse(target, status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, board: Board, next: str = "/") -> Response:
    if not board.web.auth or await viewer_of(request, board.web, board.keys) is not None:
        return RedirectResponse(local_path(next), status_code=303)
    return await board.page(request, "login.html", None, next=local_path(next))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, board: Board) -> Response:
    fields = await form(request, board)
    name, password = one(fields, "name").strip(), one(fields, "password")
    target = local_path(one(fields, "next", "/"))
    address = request.client.host if request.client is not None else "unknown"
    limiter = board.web.limiter
    wait_s = limiter.wait_s(address)
    if wait_s:
        return await board.page(
            request,
            "login.html",
            None,
            status=429,
            next=target,
            name=name,
            problem=f"Too many failed logins: wait {int(wait_s) + 1} s.",
        )
    user = None
    # counted before the slow check, not after: a burst of guesses sent at once is
    # refused past the limit instead of all being checked; a right password is forgiven
    limiter.failed(address)
    if name and password and len(name) <= 64 and len(password) <= 1000:
        async with board.login_slots:  # argon2 takes ~50 ms and 64 MB a check
            user = await board.web.app.admin.aio.verify_password(name, password)
    if user is not None:
        limiter.forgive(address)
    else:
        return await board.page(
            request,
            "login.html",
            None,
            status=401,
            next=target,
            name=name,
            problem="That name and password do not match an active user.",
        )
    response = RedirectResponse(target, status_code=303)
    value = await session_value(board.keys, user.name, user.session_version)
    set_cookie(response, request, SESSION_COOKIE, value, SESSION_MAX_AGE_S)
    # a new CSRF nonce with the new session: a token planted before login is worthless
    set_cookie(response, request, CSRF_COOKIE, secrets.token_urlsafe(24), 30 * 24 * 3600)
    return response


@router.post("/logout")
async def logout(request: Request, board: Board) -> Response:
    """Log out: every session of this user ends on the server too, not only this cookie
    (a copied cookie is worthless afterwards)."""
    await form(request, board)
    viewer = await viewer_of(request, board.web, board.keys)
    if viewer is not None and viewer.name:
        await board.web.app.admin.aio.end_sessions(viewer.name)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    set_cookie(response, request, CSRF_COOKIE, secrets.token_urlsafe(24), 30 * 24 * 3600)
    return response


def _changed(board: Dashboard) -> None:
    """The overview shown next reads the counts this action changed."""
    if board.shared is not None:
        board.shared.forget()


_ACTIONS = {"retry": Action.RETRY, "cancel": Action.CANCEL, "delete": Action.DELETE}
_DONE = {Action.RETRY: "retried", Action.CANCEL: "cancelled", Action.DELETE: "deleted"}


def _action(name: str) -> Action:
    found = _ACTIONS.get(name)
    if found is None:
        raise HTTPException(404, f"no action {name!r:.40}: use retry, cancel or delete")
    return found


@router.post("/jobs/{job_id}/{verb}")
async def act_on_job(request: Request, job_id: str, verb: str, board: Board, viewer: Who
                     ) -> Response:  # fmt: skip
    action = _action(verb)
    await form(request, board)
    require_action(viewer)
    admin = board.web.app.admin.aio
    _changed(board)
    if action is Action.DELETE:
        await admin.delete(job_id, owner=viewer.scope)
        return await _back(board, "/jobs", f"Job {job_id} deleted.")
    await (admin.retry if action is Action.RETRY else admin.cancel)(job_id, owner=viewer.scope)
    return await _back(board, f"/jobs/{quote(job_id)}", f"Job {_DONE[action]}.")


@router.get("/bulk/{verb}", response_class=HTMLResponse)
async def confirm_bulk(request: Request, verb: str, board: Board, viewer: Who) -> Response:
    """How many jobs the action would touch, and a button to do it to exactly those."""
    action = _action(verb)
    require_action(viewer)
    search = Search.of_request(request)
    filters = search.filters(viewer.scope)
    count = await board.web.app.admin.aio.count(action=action, **filters)
    return await board.page(request, "confirm.html", viewer, action=action.value, count=count,
                            search=search)  # fmt: skip


@router.post("/bulk/{verb}")
async def bulk(request: Request, verb: str, board: Board, viewer: Who) -> Response:
    action = _action(verb)
    fields = await form(request, board)
    require_action(viewer)
    search = Search.of(_Fields(fields))
    filters = search.filters(viewer.scope)
    expected_raw = one(fields, "expected")
    if not expected_raw.isdigit():
        raise HTTPException(400, "the confirmation lost its count: go back and confirm again")
    everything = search.empty and viewer.scope is None
    admin = board.web.app.admin.aio
    act = {Action.CANCEL: admin.cancel_matching, Action.RETRY: admin.retry_matching,
           Action.DELETE: admin.delete_matching}[action]  # fmt: skip
    done = await act(expected=int(expected_raw), everything=everything, **filters)
    _changed(board)
    return await _back(board, "/jobs?" + search.query(), f"{done} jobs {_DONE[action]}.")


class _Fields:
    """Parsed form fields read like query parameters (``get`` and ``getlist``)."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self._fields = fields

    def get(self, name: str, default: str = "") -> str:
        return one(self._fields, name, default)

    def getlist(self, name: str) -> list[str]:
        return list(self._fields.get(name, []))


@router.post("/queues/{verb}")
async def pause_queue(request: Request, verb: str, board: Board, viewer: Who) -> Response:
    """Pause or resume the queue named in the form (a name may hold "/": not in the path)."""
    if verb not in ("pause", "resume"):
        raise HTTPException(404, "a queue can be paused or resumed")
    fields = await form(request, board)
    name = one(fields, "queue")
    require_staff(viewer)
    require_action(viewer)
    admin = board.web.app.admin.aio
    await (admin.pause(name) if verb == "pause" else admin.resume(name))
    _changed(board)
    return await _back(board, "/", f"Queue {name} {'paused' if verb == 'pause' else 'resumed'}.")
