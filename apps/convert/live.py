"""Live updates for a session's pages: its jobs' events as server-sent events, with a
comment every 15 s so proxies keep the stream open. The page asks for an upload's full
status when an event concerns it, so an event is small and never the only source of
truth (a missed one is caught up by the next, or when the tab is shown again)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from offload import Offload

KEEPALIVE_S = 15.0


async def event_stream(app: Offload, owner: str) -> AsyncIterator[str]:
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)

    async def pump() -> None:
        async with app.admin.aio.subscribe(owner=owner) as events:
            async for event in events:
                await queue.put(event)

    pumping = asyncio.create_task(pump())
    try:
        yield "retry: 2000\n\n"
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                if pumping.done():
                    return  # the subscription ended (store gone): the browser reconnects
                yield ": keep-alive\n\n"
                continue
            data = {"job": event.id, "batch": event.batch, "state": None if event.state is None
                    else event.state.value, "progress": event.progress,
                    "message": event.message}  # fmt: skip
            yield f"data: {json.dumps(data)}\n\n"
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pumping
