"""``/api/v1/jobs``: start long work and be answered at once (202 and where to look),
follow it, list it, and cancel, retry or delete it; only the caller's own jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from offload.admin import Action
from offload.bounds import MAX_PRIORITY
from offload.errors import JobNotFound
from offload.idempotency import check_key, live_key
from offload.notices import Email, Webhook
from offload.present import job_dict
from offload.records import JobRecord
from offload.web.access import Caller
from offload.web.deps import ERRORS, CallerDep, Settings, WebSettings

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], responses=ERRORS)

#: Seconds a client is asked to wait before polling a job it just started.
POLL_AFTER_S = 1
#: The filters ``GET /api/v1/jobs`` knows, besides ``cursor`` and ``limit``.
FILTERS = ("state", "queue", "task", "owner", "batch", "text", "created_after", "created_before")


class NoticeIn(BaseModel):
    """Whom to tell when the job ends: a webhook (signed per Standard Webhooks) or an
    e-mail address (with a signed link to the job); one of the two."""

    model_config = ConfigDict(extra="forbid")

    webhook: str | None = Field(default=None, min_length=1, max_length=2000)
    email: str | None = Field(default=None, min_length=3, max_length=320)
    on: Literal["success", "failure", "end"] = "end"


class NewJobIn(BaseModel):
    """A job to start: a public task and its arguments (JSON values its type hints accept)."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=200)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    queue: str | None = Field(default=None, min_length=1, max_length=200)
    priority: int | None = Field(default=None, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    delay: float | None = Field(default=None, ge=0, le=366 * 24 * 3600, description="seconds")
    key: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="while a job of yours with this key is live, it is returned instead",
    )  # fmt: skip
    notify: list[NoticeIn] = Field(default_factory=list, max_length=10)


class JobPageOut(BaseModel):
    jobs: list[dict[str, Any]]
    next_cursor: str | None


def present(record: JobRecord, web: WebSettings) -> dict[str, Any]:
    shown = job_dict(record, task=web.app.tasks.get(record.task))
    if record.key is not None and record.key.startswith(("owner:", "idempotency:")):
        shown["key"] = None  # an HTTP client's key, stored under its owner's name
    shown["links"] = {
        "self": f"/api/v1/jobs/{record.id}",
        "events": f"/api/v1/jobs/{record.id}/events",
        "files": f"/api/v1/jobs/{record.id}/files",
    }
    return shown


def _accepted(response: Response, record: JobRecord, web: WebSettings) -> dict[str, Any]:
    response.status_code = 202
    response.headers["Location"] = f"/api/v1/jobs/{record.id}"
    response.headers["Retry-After"] = str(POLL_AFTER_S)
    return present(record, web)


def _owner_key(owner: str | None, key: str) -> str:
    return "owner:" + (f"{len(owner)}:{owner}:" if owner is not None else "-:") + key


def argument_errors(
    task: Any,
    given: int,
    problems: list[tuple[list[Any], str]],
    at: list[Any] | None = None,
    *,
    skipped: int = 0,
) -> HTTPException:
    """422 with each problem at the place the client sent it (under ``at``): ``args`` by
    index for an argument given by position, ``kwargs`` by name otherwise; ``skipped``
    leading parameters are filled in by offload (a batch callback's outcomes)."""
    at = ["body"] if at is None else at
    positional = list(task.codec.signature.parameters)[:given]
    detail = []
    for path, message in problems:
        if not path:
            loc: list[Any] = list(at)
        elif path[0] in positional:
            loc = [*at, "args", positional.index(path[0]) - skipped, *path[1:]]
        else:
            loc = [*at, "kwargs", *path]
        detail.append({"loc": loc, "msg": message, "type": "value_error"})
    return HTTPException(422, detail)


def notices(asked: list[NoticeIn], at: list[Any]) -> list[Webhook | Email]:
    """The notices asked for, each checked (422 at its place if not fit)."""
    made: list[Webhook | Email] = []
    for index, notice in enumerate(asked):
        field = "webhook" if notice.webhook is not None else "email"
        try:
            if (notice.webhook is None) == (notice.email is None):
                raise ValueError("a notice is either a webhook or an email, one of the two")
            if notice.webhook is not None:
                made.append(Webhook(url=notice.webhook, on=notice.on))
            else:
                made.append(Email(to=notice.email or "", on=notice.on))
        except ValueError as exc:
            raise HTTPException(
                422, [{"loc": [*at, index, field], "msg": str(exc), "type": "value_error"}]
            ) from None
    return made


def unknown_task(name: str, loc: list[Any]) -> HTTPException:
    message = f"no task named {name!r} may be started over HTTP"
    return HTTPException(422, [{"loc": loc, "msg": message, "type": "value_error"}])


@router.post("", status_code=202, responses={202: {"description": "started; poll Location"}})
async def start_job(
    body: NewJobIn,
    response: Response,
    web: Settings,
    caller: CallerDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Start a job of a public task; answers at once with where to follow it."""
    caller.require_action("start jobs")
    task = web.public_task(body.task)
    if task is None:
        raise unknown_task(body.task, ["body", "task"])
    admin = web.app.admin.aio
    owner = caller.owner
    if idempotency_key is not None:
        try:
            check_key(idempotency_key)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        first = await admin.recall_idempotent(owner, idempotency_key)
        if first is not None:
            try:
                return _accepted(response, await admin.get(first, owner=caller.scope), web)
            except JobNotFound:
                pass  # deleted since: start it again
    problems = task.codec.problems(body.args, body.kwargs)
    if problems:
        raise argument_errors(task, len(body.args), problems)
    key = None
    if body.key is not None:
        key = _owner_key(owner, body.key)
    elif idempotency_key is not None:
        key = live_key(owner, idempotency_key)
    bound = task.options(
        queue=body.queue,
        priority=body.priority,
        delay=body.delay,
        key=key,
        owner=owner,
        notify=notices(body.notify, ["body", "notify"]),
    )
    job = await bound.enqueue_async(*body.args, **body.kwargs)
    record = job.record
    if idempotency_key is not None:
        first_id = await admin.remember_idempotent(owner, idempotency_key, record.id)
        if first_id != record.id:
            record = await admin.get(first_id, owner=caller.scope)
    return _accepted(response, record, web)


def query_filters(
    state: Annotated[list[str] | None, Query()] = None,
    queue: str | None = None,
    task: str | None = None,
    owner: str | None = None,
    batch: str | None = None,
    text: Annotated[str | None, Query(max_length=200)] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> dict[str, Any]:
    """The job filters of a query string, as the management API takes them."""
    return {
        "state": state, "queue": queue, "task": task, "owner": owner, "batch": batch,
        "text": text, "created_after": created_after, "created_before": created_before,
    }  # fmt: skip


QueryFilters = Annotated[dict[str, Any], Depends(query_filters)]


def refuse_unknown(request: Request, *own: str) -> None:
    """A query parameter that is neither a filter nor the route's own is a mistake."""
    unknown = set(request.query_params) - {*FILTERS, *own}
    if unknown:
        known = ", ".join([*FILTERS, *own])
        raise HTTPException(400, f"unknown filter {sorted(unknown)[0]!r}: use {known}")


def scoped(filters: dict[str, Any], scope: str | None) -> dict[str, Any] | None:
    """The filters for this caller, or None if they ask for another owner's jobs."""
    if scope is None:
        return filters
    if filters.get("owner") not in (None, scope):
        return None
    return {**filters, "owner": scope}


@router.get("")
async def list_jobs(
    request: Request,
    web: Settings,
    caller: CallerDep,
    filters: QueryFilters,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    order: Literal["newest", "oldest"] = "newest",
) -> JobPageOut:
    """Your jobs, newest first (or ``order=oldest``), filtered; pass ``next_cursor`` back as
    ``cursor`` with the same order."""
    refuse_unknown(request, "cursor", "limit", "order")
    mine = scoped(filters, caller.scope)
    if mine is None:
        return JobPageOut(jobs=[], next_cursor=None)
    page = await web.app.admin.aio.jobs(cursor=cursor, limit=limit,
                                        oldest_first=order == "oldest", **mine)  # fmt: skip
    return JobPageOut(jobs=[present(j, web) for j in page.jobs], next_cursor=page.next_cursor)


@router.get("/{job_id}")
async def get_job(job_id: str, web: Settings, caller: CallerDep) -> dict[str, Any]:
    """One job: state, progress, every attempt, result or error (404 if not yours)."""
    return present(await web.app.admin.aio.get(job_id, owner=caller.scope), web)


async def _act(action: Action, job_id: str, web: Settings, caller: Caller) -> JobRecord | None:
    caller.require_action(f"{action.value} jobs")
    admin = web.app.admin.aio
    if action is Action.CANCEL:
        return await admin.cancel(job_id, owner=caller.scope)
    if action is Action.RETRY:
        return await admin.retry(job_id, owner=caller.scope)
    await admin.delete(job_id, owner=caller.scope)
    return None


@router.post("/{job_id}/cancel")
async def cancel_job(job_id: str, web: Settings, caller: CallerDep) -> dict[str, Any]:
    """Cancel a job that has not ended; a running one stops within about a second."""
    record = await _act(Action.CANCEL, job_id, web, caller)
    assert record is not None
    return present(record, web)


@router.post("/{job_id}/retry")
async def retry_job(job_id: str, web: Settings, caller: CallerDep) -> dict[str, Any]:
    """Queue a dead or cancelled job again."""
    record = await _act(Action.RETRY, job_id, web, caller)
    assert record is not None
    return present(record, web)


@router.delete("/{job_id}", status_code=204)
async def delete_job(job_id: str, web: Settings, caller: CallerDep) -> Response:
    """Forget a job that is not running."""
    await _act(Action.DELETE, job_id, web, caller)
    return Response(status_code=204)
