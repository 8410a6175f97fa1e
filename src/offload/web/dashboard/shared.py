"""Reads that every operator's overview shares: the queues' depth by state and a window's
activity. Counting a million stored jobs takes SQLite most of a second, so a page must
not pay it, nor should ten open overviews pay it ten times.

Each read runs at most once at a time in this process; pages get the last answer at
once while a newer one is fetched (stale while revalidating), and a read is repeated at
most every ``AGE_FACTOR`` times its own duration: a slow count costs the store a bounded
share of its time however many pages watch it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Generic, TypeVar

from offload.admin.activity import SPANS
from offload.errors import InvalidQuery

if TYPE_CHECKING:
    from offload.admin import Activity, AsyncAdmin, QueueInfo

T = TypeVar("T")

#: An answer is fresh for at least this long...
MIN_AGE_S = 1.0
#: ...or this many times what it took to get, whichever is longer.
AGE_FACTOR = 5.0
#: An answer older than this is never shown: the page waits for a new one.
MAX_STALE_S = 60.0


class Shared(Generic[T]):
    """One expensive read, shared by the pages of this process."""

    def __init__(self, fetch: Callable[[], Awaitable[T]]) -> None:
        self._fetch = fetch
        self._value: T | None = None
        self._at = 0.0
        self._took_s = 0.0
        self._running: asyncio.Task[T] | None = None
        self._generation = 0

    async def _refresh(self) -> T:
        generation, started = self._generation, time.monotonic()
        value = await self._fetch()
        if generation == self._generation:  # not begun before a forget: keep it
            self._value, self._at = value, time.monotonic()
            self._took_s = self._at - started
        return value

    async def get(self) -> tuple[T, bool]:
        """The newest answer, and whether it is fresh (if not, a newer one is on its way:
        the page asks again shortly)."""
        age_s = time.monotonic() - self._at
        if self._value is not None and age_s < max(MIN_AGE_S, AGE_FACTOR * self._took_s):
            return self._value, True
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._refresh())
        if self._value is not None and age_s < MAX_STALE_S:
            return self._value, False
        return await asyncio.shield(self._running), True

    def forget(self) -> None:
        """After an action that changed it here: the next page waits for a new answer."""
        self._value, self._running = None, None
        self._generation += 1


class SharedReads:
    """The overview's shared reads, per server process."""

    def __init__(self, admin: AsyncAdmin) -> None:
        self.queues: Shared[list[QueueInfo]] = Shared(admin.queues)
        self._activity = {span: Shared(partial(admin.activity, span=span)) for span in SPANS}

    def forget(self) -> None:
        self.queues.forget()

    def activity(self, span: str) -> Shared[Activity]:
        found = self._activity.get(span)
        if found is None:
            raise InvalidQuery(f"unknown span {span!r:.40}: use one of {', '.join(SPANS)}")
        return found
