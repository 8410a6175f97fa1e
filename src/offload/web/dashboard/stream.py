"""The pages' live feed: one server-sent ``changed`` event, at most every ``COALESCE_S``,
whenever a job the page shows may have changed; each live region then fetches its
fragment again (htmx ``hx-trigger="sse:changed"``).

A busy system makes thousands of events a second; a page needs one redraw a second at
most. Coalescing here keeps both the browser and the pages' reads light, and the last
change of a burst always ends in one more event, so a page never stops one step short.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse

from offload.admin import Subscription
from offload.web.dashboard.deps import Board, Who
from offload.web.dashboard.render import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

COALESCE_S = 1.0
KEEPALIVE_S = 15.0
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def changes(subscription: Subscription, coalesce_s: float = COALESCE_S,
                  keepalive_s: float = KEEPALIVE_S) -> AsyncIterator[str]:  # fmt: skip
    changed = asyncio.Event()

    async def pump() -> None:
        async with subscription as events:
            async for event in events:
                if not event.current:  # the page was drawn with where things stand
                    changed.set()

    pumping = asyncio.create_task(pump())
    try:
        yield "retry: 2000\n\n"
        # the page was drawn before this stream listened: once it does, one "changed"
        # makes the page read again, so a change in between is never lost
        listening = asyncio.ensure_future(subscription.listening.wait())
        await asyncio.wait({listening, pumping}, return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        changed.set()
        while not pumping.done():
            try:
                await asyncio.wait_for(changed.wait(), timeout=keepalive_s)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            changed.clear()
            yield "event: changed\ndata: {}\n\n"
            await asyncio.sleep(coalesce_s)  # what changes meanwhile is one more event
    finally:
        pumping.cancel()
        with contextlib.suppress(BaseException):
            await pumping


@router.get("/live")
async def live(board: Board, viewer: Who, job: str | None = None, batch: str | None = None
               ) -> StreamingResponse:  # fmt: skip
    """``changed`` events for one job, one batch, or everything the viewer may see."""
    web = board.web
    admin = web.app.admin.aio
    if job is not None:
        await admin.get(job, owner=viewer.scope)  # 404 before the stream starts
    if batch is not None:
        await admin.batch(batch, owner=viewer.scope)
    who = "dashboard:" + (viewer.name or "-")
    if sum(web.streams.values()) >= web.max_streams or (
        web.streams.get(who, 0) >= web.max_streams_per_caller
    ):
        raise HTTPException(429, "too many open live pages; close a tab or try again later")
    subscription = admin.subscribe(job=job, batch=batch, owner=viewer.scope)

    async def counted() -> AsyncIterator[str]:
        web.streams[who] = web.streams.get(who, 0) + 1
        try:
            async for chunk in changes(subscription):
                yield chunk
        finally:
            web.streams[who] -= 1
            if not web.streams[who]:
                del web.streams[who]

    return StreamingResponse(counted(), media_type="text/event-stream", headers=_HEADERS)
