"""Live events for the blocking stores (SQLite, memory): a tail of their event log.

Each step appends its events to a log in the same transaction as the step, under
an increasing sequence number. A subscriber remembers the last number it read and
reads on whenever the store says it changed: an in-process listener for this
process's steps, an inotify watch on SQLite's WAL for other processes' commits (a
poll where the OS has no watch).

The watch fires when another process writes its commit to the WAL, which is before
readers can see that commit (SQLite syncs the file, then publishes the commit in its
shared index, and neither wakes a watch). A read on that wake-up may find nothing
yet, and no later write may come to wake the stream again: so after each wake-up the
stream reads again, from 2 ms backing off to 50 ms, until ``SETTLE_S`` passes quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING

from offload.backends.filewatch import watch_file
from offload.records import CONTROL_KINDS, EventKind, JobEvent

if TYPE_CHECKING:
    from offload.backends.store import ThreadedBackend

#: Steps read per call, so one subscriber far behind cannot hold the store's thread long.
READ_LIMIT = 500
#: Where the OS cannot watch the file, how often the log is read.
POLL_S = 0.05
#: After a wake-up, the first look again and how long the stream keeps looking.
SETTLE_FIRST_S = 0.002
SETTLE_S = 1.0
#: A subscription to the control kinds only (a worker's: cancels and pauses, which are
#: rare) reads the log this often instead of after every commit, so a busy store's
#: commits cost each worker nothing: a cancel still reaches its job within a second.
CONTROL_GAP_S = 0.5
#: A subscriber to more than the control kinds asks the store for them this long, and
#: asks again each third of it (steps log only the control kinds while nobody asks).
LISTEN_TTL_S = 15.0


class TailStream:
    """``EventStream`` over a blocking store's event log."""

    def __init__(self, backend: ThreadedBackend, kinds: frozenset[EventKind] = frozenset()) -> None:
        self._backend = backend
        self._kinds = kinds
        #: Only the control kinds (a worker's): read every ``CONTROL_GAP_S``, woken by
        #: nothing else, so a busy store's commits cost a worker nothing.
        self._control = bool(kinds) and kinds <= CONTROL_KINDS
        self._clocked = False
        self._store = backend.store
        self._seq = 0
        self._changed = asyncio.Event()
        self._end_watch: Callable[[], None] | None = None
        self._wake: Callable[[], None] | None = None
        self._listen_again_at = float("inf")

    async def __aenter__(self) -> TailStream:
        loop = asyncio.get_running_loop()
        changed = self._changed

        def wake() -> None:
            loop.call_soon_threadsafe(changed.set)

        path = self._store.changed_file()
        self._clocked = self._control and path is not None  # read on a clock, woken by nothing
        if not self._clocked:
            self._wake = wake
            self._store.add_listener(wake)
        if path is not None and not self._clocked:
            self._end_watch = watch_file(path, loop, changed.set)
        if self._control:
            self._seq = await self._backend.run_blocking(self._store.last_event_seq)
        else:  # asked before the log's end is read: no step after that read leaves it out
            self._seq = await self._backend.run_blocking(self._store.listen, LISTEN_TTL_S)
            self._listen_again_at = time.monotonic() + LISTEN_TTL_S / 3
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

    async def _read(self) -> list[list[JobEvent]]:
        """The wanted events of every step logged since the last read."""
        out = []
        while True:
            steps = await self._backend.run_blocking(self._store.read_events, self._seq, READ_LIMIT)
            for seq, step in steps:
                self._seq = seq
                wanted = [e for e in step if e.kind in self._kinds] if self._kinds else step
                if wanted:
                    out.append(wanted)
            if len(steps) < READ_LIMIT:
                return out

    async def _steps(self) -> AsyncIterator[list[JobEvent]]:
        shared = self._store.changed_file() is not None  # other processes write the log too
        polling = shared and self._end_watch is None
        settle_until = 0.0
        interval_s = SETTLE_FIRST_S
        while self._clocked:
            await asyncio.sleep(CONTROL_GAP_S)
            for step in await self._read():
                yield step
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
            now = time.monotonic()
            if now >= self._listen_again_at:
                await self._backend.run_blocking(self._store.listen, LISTEN_TTL_S)
                self._listen_again_at = now + LISTEN_TTL_S / 3
            timeout_s: float | None = None
            if self._listen_again_at != float("inf"):
                timeout_s = self._listen_again_at - now
            if polling:
                timeout_s = POLL_S
            elif now < settle_until:
                timeout_s = interval_s
                interval_s = min(interval_s * 2, POLL_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._changed.wait()
            if shared and self._changed.is_set():  # a commit may not be visible yet
                settle_until = time.monotonic() + SETTLE_S
                interval_s = SETTLE_FIRST_S
