"""Live job events as server-sent events: the current state first, then each change,
with a comment every ``KEEPALIVE_S`` so that proxies keep the connection open.

A job's own stream ends after its final state (succeeded, dead or cancelled): there
is nothing more to wait for. A client that reconnects sends ``Last-Event-ID``: it gets
the current state again (nothing is missed in between) and no change older than the
event it saw last. A client that goes away ends its subscription at once (Starlette
cancels the stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException
from fastapi.responses import StreamingResponse

from offload.admin import Subscription
from offload.present import iso
from offload.records import JobEvent
from offload.states import JobState
from offload.web.access import Caller
from offload.web.deps import ERRORS, CallerDep, Settings, WebSettings

router = APIRouter(prefix="/api/v1", tags=["live"], responses=ERRORS)

KEEPALIVE_S = 15.0
#: Events a slow client may fall behind by before the store's stream waits for it.
BACKLOG = 1000
_FINAL = (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED)
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "events"}
}


def event_json(event: JobEvent) -> dict[str, Any]:
    return {
        "kind": event.kind.value, "job": event.id or None, "queue": event.queue or None,
        "state": None if event.state is None else event.state.value, "task": event.task or None,
        "owner": event.owner, "batch": event.batch, "attempt": event.attempt,
        "progress": event.progress, "message": event.message, "worker": event.worker,
        "at": iso(event.at), "current": event.current,
    }  # fmt: skip


def _after_ms(last_event_id: str | None) -> int | None:
    if not last_event_id:
        return None
    head = last_event_id.partition("-")[0]
    return int(head) if head.isascii() and head.isdigit() else None


async def sse(
    subscription: Subscription,
    last_event_id: str | None,
    *,
    until_final: bool = False,
    keepalive_s: float = KEEPALIVE_S,
) -> AsyncIterator[str]:
    after_ms = _after_ms(last_event_id)
    backlog: asyncio.Queue[JobEvent] = asyncio.Queue(maxsize=BACKLOG)

    async def pump() -> None:
        async with subscription as events:
            async for event in events:
                await backlog.put(event)

    pumping = asyncio.create_task(pump())
    sent = 0
    try:
        yield "retry: 2000\n\n"  # a browser that lost the stream reconnects after 2 s
        while True:
            getting = asyncio.ensure_future(backlog.get())
            done, _ = await asyncio.wait(
                {getting, pumping}, timeout=keepalive_s, return_when=asyncio.FIRST_COMPLETED
            )
            if getting not in done:
                getting.cancel()
                if pumping in done:
                    return  # the job went away (deleted), or the store's stream ended
                yield ": keep-alive\n\n"
                continue
            event = getting.result()
            at_ms = int(event.at * 1000)
            if after_ms is not None and not event.current and at_ms < after_ms:
                continue  # seen before the reconnect
            sent += 1
            data = json.dumps(event_json(event), separators=(",", ":"))
            yield f"id: {at_ms}-{sent}\nevent: {event.kind.value}\ndata: {data}\n\n"
            if until_final and event.state in _FINAL:
                return
    finally:
        pumping.cancel()
        with contextlib.suppress(BaseException):
            await pumping


def _stream(
    web: WebSettings,
    caller: Caller,
    subscription: Subscription,
    last_event_id: str | None,
    *,
    until_final: bool = False,
) -> StreamingResponse:
    """The stream, counted against this process's and this caller's share of streams
    (each holds a store subscription): past either, a 429 to try again later."""
    who = caller.token_id or caller.owner or "-"
    if sum(web.streams.values()) >= web.max_streams or (
        web.streams.get(who, 0) >= web.max_streams_per_caller
    ):
        raise HTTPException(429, "too many open event streams; close one or try again later",
                            headers={"Retry-After": "5"})  # fmt: skip

    async def counted() -> AsyncIterator[str]:
        web.streams[who] = web.streams.get(who, 0) + 1  # here: a stream never begun holds none
        try:
            async for chunk in sse(subscription, last_event_id, until_final=until_final):
                yield chunk
        finally:
            web.streams[who] -= 1
            if not web.streams[who]:
                del web.streams[who]

    return StreamingResponse(counted(), media_type="text/event-stream", headers=_HEADERS)


@router.get("/jobs/{job_id}/events", responses=_EVENT_STREAM, response_class=StreamingResponse)
async def job_events(
    job_id: str,
    web: Settings,
    caller: CallerDep,
    last_event_id: Annotated[str | None, Header(max_length=100)] = None,
) -> StreamingResponse:
    """One job's events: where it stands, then each change, up to its final state."""
    admin = web.app.admin.aio
    await admin.get(job_id, owner=caller.scope)  # 404 before the stream starts
    subscription = admin.subscribe(job=job_id, owner=caller.scope)
    return _stream(web, caller, subscription, last_event_id, until_final=True)


@router.get("/events", responses=_EVENT_STREAM, response_class=StreamingResponse)
async def events(
    web: Settings,
    caller: CallerDep,
    batch: str | None = None,
    last_event_id: Annotated[str | None, Header(max_length=100)] = None,
) -> StreamingResponse:
    """Your jobs' events (or one batch's): live jobs first, then each change."""
    admin = web.app.admin.aio
    if batch is not None:
        await admin.batch(batch, owner=caller.scope)  # 404 before the stream starts
    return _stream(web, caller, admin.subscribe(owner=caller.scope, batch=batch), last_event_id)
