"""Live events for the blocking stores (SQLite, memory): a tail of their event log.

Each step appends its events to a log in the same transaction as the step, under
an increasing sequence number. A subscriber remembers the last number it read and
reads on whenever the store says it changed: an in-process listener for this
process's steps, an inotify watch on SQLite's WAL for other processes' commits (a
poll of the file's marker where the OS has no watch).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING

from offload.backends.filewatch import watch_file
from offload.records import EventKind, JobEvent

if TYPE_CHECKING:
    from offload.backends.store import ThreadedBackend

#: Steps read per call, so one subscriber far behind cannot hold the store's thread long.
READ_LIMIT = 500
#: Where the OS cannot watch the file, how often the marker is compared.
POLL_S = 0.05


class TailStream:
    """``EventStream`` over a blocking store's event log."""

    def __init__(self, backend: ThreadedBackend, kinds: frozenset[EventKind] = frozenset()) -> None:
        self._backend = backend
        self._kinds = kinds
        self._store = backend.store
        self._seq = 0
        self._changed = asyncio.Event()
        self._end_watch: Callable[[], None] | None = None
        self._wake: Callable[[], None] | None = None

    async def __aenter__(self) -> TailStream:
        loop = asyncio.get_running_loop()
        changed = self._changed

        def wake() -> None:
            loop.call_soon_threadsafe(changed.set)

        self._wake = wake
        self._store.add_listener(wake)
        path = self._store.changed_file()
        if path is not None:
            self._end_watch = watch_file(path, loop, changed.set)
        self._seq = await self._backend.run_blocking(self._store.last_event_seq)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._wake is not None:
            self._store.remove_listener(self._wake)
            self._wake = None
        if self._end_watch is not None:
            self._end_watch()
            self._end_watch = None

    def __aiter__(self) -> AsyncIterator[list[JobEvent]]:
        return self._steps()

    async def _steps(self) -> AsyncIterator[list[JobEvent]]:
        polling = self._store.change_marker() is not None and self._end_watch is None
        while True:
            self._changed.clear()
            steps = await self._backend.run_blocking(self._store.read_events, self._seq, READ_LIMIT)
            for seq, step in steps:
                self._seq = seq
                wanted = [e for e in step if e.kind in self._kinds] if self._kinds else step
                if wanted:
                    yield wanted
            if len(steps) == READ_LIMIT:
                continue
            if polling:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_S):
                        await self._changed.wait()
            else:
                await self._changed.wait()
