"""The dashboard's pages: the overview, the jobs search, a job, batches, schedules and
workers. Each reads through ``app.admin.aio`` within the viewer's scope; a live region
asked for by htmx gets its fragment only."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from offload.errors import InvalidQuery
from offload.present import job_dict
from offload.records import JobRecord
from offload.states import JobState
from offload.web.dashboard.deps import Board, Who, require_staff
from offload.web.dashboard.query import Search
from offload.web.dashboard.render import PageRoute
from offload.web.files import send_file

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE_SIZE = 50
_LIVE = [JobState.QUEUED.value, JobState.SCHEDULED.value, JobState.RUNNING.value]
_ENDED = [JobState.SUCCEEDED.value, JobState.DEAD.value, JobState.CANCELLED.value]
_ORDER = [s.value for s in JobState]


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, board: Board, viewer: Who, span: str = "hour"
                   ) -> HTMLResponse:  # fmt: skip
    admin = board.web.app.admin.aio
    if not viewer.is_staff:
        return await _my_work(request, board, viewer)
    assert board.shared is not None
    (queues, fresh), (activity, recent), workers = await asyncio.gather(
        board.shared.queues.get(), board.shared.activity(span).get(), admin.workers()
    )
    return await board.page(
        request, "overview.html", viewer, partial="overview_live.html", queues=queues,
        activity=activity, workers=workers, span=span, states=_ORDER,
        stale=not (fresh and recent),
    )  # fmt: skip


async def _my_work(request: Request, board: Board, viewer: Who) -> HTMLResponse:
    """A submitter's or viewer's own work: what runs, what ended, their batches."""
    admin = board.web.app.admin.aio
    owner = viewer.scope
    running, ended, batches = await asyncio.gather(
        admin.jobs(owner=owner, state=_LIVE, limit=20),
        admin.jobs(owner=owner, state=_ENDED, limit=20),
        admin.batches(owner=owner),
    )
    counts = dict(zip(_ORDER, await asyncio.gather(
        *(admin.count(owner=owner, state=s) for s in _ORDER)), strict=True))  # fmt: skip
    return await board.page(
        request, "my_work.html", viewer, partial="my_work_live.html", running=running.jobs,
        ended=ended.jobs, batches=batches, counts=counts,
    )  # fmt: skip


@router.get("/jobs", response_class=HTMLResponse)
async def jobs(request: Request, board: Board, viewer: Who, cursor: str | None = None,
               order: str = "newest") -> HTMLResponse:  # fmt: skip
    admin = board.web.app.admin.aio
    problem = None
    page = None
    try:
        search = Search.of_request(request)
        filters = search.filters(viewer.scope)
        if order not in ("newest", "oldest"):
            raise InvalidQuery("order is newest or oldest")
        page = await admin.jobs(cursor=cursor, limit=PAGE_SIZE, oldest_first=order == "oldest",
                                **filters)  # fmt: skip
    except (InvalidQuery, HTTPException, ValueError) as exc:  # a message beside the form
        problem = str(exc.detail) if isinstance(exc, HTTPException) else str(exc)
        search = Search()
        search.typed = {
            k: str(request.query_params.get(k, ""))[:200]
            for k in ("queue", "task", "owner", "batch", "text", "after", "before")
        }
    return await board.page(
        request, "jobs.html", viewer, partial="jobs_live.html", search=search,
        page=page, problem=problem, states=_ORDER, cursor=cursor, order=order,
    )  # fmt: skip


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job(request: Request, job_id: str, board: Board, viewer: Who) -> HTMLResponse:
    admin = board.web.app.admin.aio
    record = await admin.get(job_id, owner=viewer.scope)
    related, files = await asyncio.gather(
        admin.related(job_id, owner=viewer.scope), admin.files(job_id, owner=viewer.scope)
    )
    task = board.web.app.tasks.get(record.task)
    shown = job_dict(record, task=task)  # secrets redacted, in messages too
    return await board.page(
        request, "job.html", viewer, partial="job_live.html", job=record,
        shown=shown, related=related, files=files,
        notices=[(n, _notice_label(n)) for n in related.notices],
        traceback=(shown["error"] or {}).get("traceback"),
    )  # fmt: skip


@router.get("/jobs/{job_id}/files/{name}")
async def job_file(job_id: str, name: str, board: Board, viewer: Who) -> Response:
    """A job's file, for a signed-in viewer allowed to see the job."""
    handle, info = await board.web.app.admin.aio.open_file(job_id, name, owner=viewer.scope)
    return send_file(handle, info)


@router.get("/batches", response_class=HTMLResponse)
async def batches(request: Request, board: Board, viewer: Who) -> HTMLResponse:
    found = await board.web.app.admin.aio.batches(owner=viewer.scope)
    return await board.page(request, "batches.html", viewer, partial="batches_live.html",
                            batches=found)  # fmt: skip


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
async def batch(request: Request, batch_id: str, board: Board, viewer: Who) -> HTMLResponse:
    admin = board.web.app.admin.aio
    status = await admin.batch(batch_id, owner=viewer.scope)
    members = await admin.jobs(batch=batch_id, owner=viewer.scope, limit=PAGE_SIZE)
    return await board.page(request, "batch.html", viewer, partial="batch_live.html",
                            batch=status, members=members)  # fmt: skip


@router.get("/schedules", response_class=HTMLResponse)
async def schedules(request: Request, board: Board, viewer: Who) -> HTMLResponse:
    require_staff(viewer)
    found = await board.web.app.admin.aio.schedules()
    return await board.page(request, "schedules.html", viewer, schedules=found)


@router.get("/workers", response_class=HTMLResponse)
async def workers(request: Request, board: Board, viewer: Who) -> HTMLResponse:
    require_staff(viewer)
    found = await board.web.app.admin.aio.workers()
    return await board.page(request, "workers.html", viewer, partial="workers_live.html",
                            workers=found)  # fmt: skip


@router.get("/charts.json")
async def charts(board: Board, viewer: Who, span: str = "hour") -> dict[str, Any]:
    """The overview's chart series: columns for uPlot (x in seconds)."""
    require_staff(viewer)
    assert board.shared is not None
    points = (await board.shared.activity(span).get())[0].points
    return {
        "span": span,
        "x": [p.at_s for p in points],
        "finished": [p.finished_per_min for p in points],
        "failed": [p.failed_per_min for p in points],
        "wait_p95_ms": [p.wait_p95_ms for p in points],
        "run_p95_ms": [p.run_p95_ms for p in points],
    }


def _notice_label(notice: JobRecord) -> str:
    """What a notice job delivers: whom (a webhook by its host only: its path and query
    often hold its credential), on which end. Its arguments are secret and read here raw."""
    shown = job_dict(notice)  # without its task: not redacted, and never shown whole
    asked = shown["kwargs"].get("notice") if isinstance(shown["kwargs"], dict) else None
    if not isinstance(asked, dict):
        return notice.task
    on = asked.get("on", "end")
    if "email" in asked:
        return f"e-mail to {asked['email']} (on {on})"
    if "webhook" in asked:
        parts = urlsplit(str(asked["webhook"]))
        return f"webhook to {parts.scheme}://{parts.hostname or '?'} (on {on})"
    return notice.task
