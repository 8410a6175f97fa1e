"""Acting on many jobs at once (given the count the client saw), and the shared parts of
the system: queues (with pause and resume), workers and schedules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from offload.admin import Action
from offload.present import iso
from offload.web.deps import ERRORS, CallerDep, Settings
from offload.web.jobs import QueryFilters, refuse_unknown, scoped

router = APIRouter(prefix="/api/v1", tags=["manage"], responses=ERRORS)


class FilterIn(BaseModel):
    """Jobs matching all that is given."""

    model_config = ConfigDict(extra="forbid")

    state: list[str] | None = None
    queue: str | None = None
    task: str | None = None
    owner: str | None = None
    batch: str | None = None
    text: str | None = Field(default=None, max_length=200)
    created_after: datetime | None = None
    created_before: datetime | None = None


class BulkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filter: FilterIn
    expected: int = Field(ge=0, description="the count you saw (GET /api/v1/jobs/count)")
    everything: bool = Field(default=False, description="say so to act on a filter of nothing")


class CountOut(BaseModel):
    count: int


@router.get("/jobs/count")
async def count_jobs(
    request: Request,
    web: Settings,
    caller: CallerDep,
    filters: QueryFilters,
    action: Action | None = None,
) -> CountOut:
    """How many of your jobs match (those ``action`` would change, if given)."""
    refuse_unknown(request, "action")
    mine = scoped(filters, caller.scope)
    if mine is None:
        return CountOut(count=0)
    return CountOut(count=await web.app.admin.aio.count(action=action, **mine))


async def _bulk(action: Action, body: BulkIn, web: Settings, caller: CallerDep) -> CountOut:
    caller.require_action(f"{action.value} jobs")
    asked = body.filter.model_dump()
    if not any(asked.values()) and not body.everything:  # all of a caller's own, too
        raise HTTPException(
            400, f"this filter matches every job: to {action.value} them all, say so "
            '("everything": true)',
        )  # fmt: skip
    filters = scoped(asked, caller.scope)
    if filters is None:
        return CountOut(count=0)
    admin = web.app.admin.aio
    act = {Action.CANCEL: admin.cancel_matching, Action.RETRY: admin.retry_matching,
           Action.DELETE: admin.delete_matching}[action]  # fmt: skip
    return CountOut(count=await act(expected=body.expected, everything=body.everything, **filters))


@router.post("/jobs/cancel", responses={409: {"description": "more jobs match than expected"}})
async def cancel_matching(body: BulkIn, web: Settings, caller: CallerDep) -> CountOut:
    """Cancel every matching job; refused (409) if more match than ``expected``."""
    return await _bulk(Action.CANCEL, body, web, caller)


@router.post("/jobs/retry", responses={409: {"description": "more jobs match than expected"}})
async def retry_matching(body: BulkIn, web: Settings, caller: CallerDep) -> CountOut:
    """Queue every matching dead or cancelled job again."""
    return await _bulk(Action.RETRY, body, web, caller)


@router.post("/jobs/delete", responses={409: {"description": "more jobs match than expected"}})
async def delete_matching(body: BulkIn, web: Settings, caller: CallerDep) -> CountOut:
    """Forget every matching job that is not running."""
    return await _bulk(Action.DELETE, body, web, caller)


@router.get("/queues")
async def queues(web: Settings, caller: CallerDep) -> list[dict[str, Any]]:
    """Every queue: jobs by state, the oldest ready job's age, paused or not."""
    caller.require_staff("see queues")
    return [msgspec.to_builtins(q) for q in await web.app.admin.aio.queues()]


async def _pause(name: str, paused: bool, web: Settings, caller: CallerDep) -> dict[str, Any]:
    caller.require_staff("pause or resume queues")
    caller.require_action("pause or resume queues")
    admin = web.app.admin.aio
    changed = await (admin.pause(name) if paused else admin.resume(name))
    return {"queue": name, "paused": paused, "changed": changed}


@router.post("/queues/{name}/pause")
async def pause(name: str, web: Settings, caller: CallerDep) -> dict[str, Any]:
    """Workers stop claiming from the queue within about a second (running jobs go on)."""
    return await _pause(name, True, web, caller)


@router.post("/queues/{name}/resume")
async def resume(name: str, web: Settings, caller: CallerDep) -> dict[str, Any]:
    return await _pause(name, False, web, caller)


@router.get("/workers")
async def workers(web: Settings, caller: CallerDep) -> list[dict[str, Any]]:
    """Live workers and the jobs each runs."""
    caller.require_staff("see workers")
    out = []
    for w in await web.app.admin.aio.workers():
        shown = msgspec.to_builtins(w)
        shown["started_at"], shown["last_seen"] = iso(w.started_at), iso(w.last_seen)
        out.append(shown)
    return out


@router.get("/schedules")
async def schedules(web: Settings, caller: CallerDep) -> list[dict[str, Any]]:
    """The app's cron schedules with their last and next runs."""
    caller.require_staff("see schedules")
    out = []
    for entry in await web.app.admin.aio.schedules():
        shown = msgspec.to_builtins(entry)
        shown["last_due"] = iso(shown.pop("last_due_s"))
        shown["next_run"] = iso(shown.pop("next_run_s"))
        out.append(shown)
    return out
