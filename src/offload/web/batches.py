"""``/api/v1/batches``: many jobs in one request, answered at once, with an optional
callback that runs once after the last of them has ended."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field

from offload.batches import BATCH_DONE_TASK, BatchStatus
from offload.present import iso
from offload.web.deps import ERRORS, CallerDep, Settings
from offload.web.jobs import (
    POLL_AFTER_S,
    NewJobIn,
    NoticeIn,
    argument_errors,
    notices,
    unknown_task,
)

router = APIRouter(prefix="/api/v1/batches", tags=["batches"], responses=ERRORS)

#: Jobs one request may start (a bigger batch is several requests' worth of bytes anyway).
MAX_MEMBERS = 1000
#: Notices one request may ask for, members' and the batch's together (no mail cannon).
MAX_NOTICES = 50


class MemberIn(NewJobIn):
    key: None = Field(default=None, description="members carry no unique key")


class CallbackIn(BaseModel):
    """A public task run once every member has ended, with their outcomes (id, state,
    result, error) as its first argument, then ``args`` and ``kwargs``."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=200)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class NewBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[MemberIn] = Field(min_length=1, max_length=MAX_MEMBERS)
    on_complete: CallbackIn | None = None
    notify: list[NoticeIn] = Field(default_factory=list, max_length=10,
                                   description="one notice for the whole batch")  # fmt: skip


def present(status: BatchStatus, member_ids: list[str] | None = None) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": status.id, "total": status.total, "done": status.done,
        "finished": status.finished, "counts": status.counts,
        "completed_at": iso(status.completed_at),
        "links": {"self": f"/api/v1/batches/{status.id}",
                  "jobs": f"/api/v1/jobs?batch={status.id}",
                  "events": f"/api/v1/events?batch={status.id}"},
    }  # fmt: skip
    if member_ids is not None:
        shown["jobs"] = member_ids
    return shown


@router.post("", status_code=202, responses={202: {"description": "started; poll Location"}})
async def start_batch(
    body: NewBatchIn, response: Response, web: Settings, caller: CallerDep
) -> dict[str, Any]:
    """Start every job of the batch in one step (all or none)."""
    caller.require_action("start jobs")
    asked_notices = len(body.notify) + sum(len(m.notify) for m in body.jobs)
    if asked_notices > MAX_NOTICES:
        raise HTTPException(422, [{"loc": ["body"], "type": "value_error",
                                   "msg": f"{asked_notices} notices asked; at most {MAX_NOTICES} "
                                   "a request (ask for one for the batch: notify)"}])  # fmt: skip
    signatures = []
    for index, member in enumerate(body.jobs):
        task = web.public_task(member.task)
        if task is None:
            raise unknown_task(member.task, ["body", "jobs", index, "task"])
        problems = task.codec.problems(member.args, member.kwargs)
        if problems:
            raise argument_errors(task, len(member.args), problems, ["body", "jobs", index])
        asked = notices(member.notify, ["body", "jobs", index, "notify"])
        bound = task.options(queue=member.queue, priority=member.priority, delay=member.delay,
                             owner=caller.owner, notify=asked)  # fmt: skip
        signatures.append(bound.s(*member.args, **member.kwargs))
    callback = None
    if body.on_complete is not None:
        then = body.on_complete
        task = web.public_task(then.task)
        if task is None:
            raise unknown_task(then.task, ["body", "on_complete", "task"])
        problems = task.codec.problems([[], *then.args], then.kwargs)
        if problems:
            raise argument_errors(
                task, len(then.args) + 1, problems, ["body", "on_complete"], skipped=1
            )
        callback = task.options(owner=caller.owner).s(*then.args, **then.kwargs)
    told = notices(body.notify, ["body", "notify"])
    if callback is None and told:
        callback = web.app.tasks[BATCH_DONE_TASK].options(owner=caller.owner).s()
    batch = await web.app.batch_async(signatures, on_complete=callback, notify=told)
    status = await web.app.admin.aio.batch(batch.id, owner=caller.scope)
    page = await web.app.admin.aio.jobs(batch=batch.id, limit=MAX_MEMBERS)
    response.status_code = 202
    response.headers["Location"] = f"/api/v1/batches/{batch.id}"
    response.headers["Retry-After"] = str(POLL_AFTER_S)
    return present(status, sorted(j.id for j in page.jobs))


@router.get("")
async def list_batches(web: Settings, caller: CallerDep) -> list[dict[str, Any]]:
    """Your batches whose callback has not run yet, with their progress."""
    return [present(s) for s in await web.app.admin.aio.batches(owner=caller.scope)]


@router.get("/{batch_id}")
async def get_batch(batch_id: str, web: Settings, caller: CallerDep) -> dict[str, Any]:
    """A batch's progress: members by state, done, finished (404 if not yours)."""
    if not batch_id.isprintable() or len(batch_id) > 200:
        raise HTTPException(404, f"no batch with id {batch_id!r}")
    return present(await web.app.admin.aio.batch(batch_id, owner=caller.scope))
