"""Blocking stores and the adapter that serves them to the async core.

SQLite and the in-memory store are naturally synchronous: they implement
``SyncStore`` once and ``ThreadedBackend`` turns that into the async
``Backend``, running blocking I/O on one dedicated thread so the worker's event
loop never waits on a disk lock. Sync callers use the store directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from offload.backends.base import (
    ALL_EVENTS,
    BatchQueryParams,
    Capabilities,
    ClaimParams,
    CountParams,
    CountsParams,
    CountsQuery,
    EnqueueParams,
    EventStream,
    FinishParams,
    FinishResult,
    HeartbeatParams,
    HeartbeatResult,
    IdsParams,
    LockParams,
    MarkNamesParams,
    MarkParams,
    Page,
    ProgressParams,
    PruneParams,
    PublishParams,
    PurgeParams,
    QueryParams,
    QueueStats,
    ReapedJob,
    ReapParams,
    SubscribeParams,
    SyncBackend,
    WaitParams,
    WorkerBeatParams,
)
from offload.backends.event_tail import TailStream
from offload.backends.filewatch import watch_file
from offload.records import BatchRecord, JobEvent, JobRecord, MinuteCounts, WorkerInfo

T = TypeVar("T")

#: Cross-process change polling starts fast after activity and backs off to this cap. The
#: cap is what a job enqueued by another process may wait on top of its claim: at 50 ms (a
#: backoff doubling 2, 4, 8, 16, 32 ms) one paced job in 20 waited 18 ms and one in 50
#: 33 ms; at 5 ms the p99 is 7 ms. A poll is one stat() of the WAL, for at most QUIET_S.
MAX_POLL_INTERVAL_S = 0.005
MIN_POLL_INTERVAL_S = 0.002
#: How long without a change before a waiter stops polling and watches the file instead.
QUIET_S = 1.0


class SyncStore(SyncBackend, Protocol):
    capabilities: Capabilities
    #: False when every call is a quick in-memory step that may run on the event loop.
    blocks: bool

    def claim(self, params: ClaimParams) -> list[JobRecord]: ...
    def heartbeat(self, params: HeartbeatParams) -> HeartbeatResult: ...
    def finish(self, params: FinishParams) -> FinishResult: ...
    def report_progress(self, params: ProgressParams) -> None: ...
    def promote_due(self) -> int: ...
    def reap_expired(self, params: ReapParams) -> list[ReapedJob]: ...
    def prune(self, params: PruneParams) -> int: ...
    def lock(self, params: LockParams) -> bool: ...
    def unlock(self, params: LockParams) -> None: ...

    def next_ready_at(self, queues: Sequence[str]) -> float | None:
        """When the earliest job on ``queues`` is due (now or past if one is ready)."""
        ...

    def change_marker(self) -> object:
        """A cheap value that changes when another process commits (None: in-process only)."""
        ...

    def changed_file(self) -> str | None:
        """The file every commit writes, watched for wake-ups where the OS can (else None)."""
        ...

    def last_event_seq(self) -> int:
        """The sequence number of the newest step in the event log (0 if none)."""
        ...

    def listen(self, ttl_s: float) -> int:
        """Ask for every kind of event for ``ttl_s`` more (steps may log only the control
        kinds while nobody asks); the newest step's number, as ``last_event_seq``."""
        ...

    def read_events(self, after_seq: int, limit: int) -> list[tuple[int, list[JobEvent]]]:
        """Up to ``limit`` steps logged after ``after_seq``, oldest first: (seq, events)."""
        ...

    def beat_worker(self, params: WorkerBeatParams) -> None: ...
    def remove_worker(self, params: IdsParams) -> None: ...
    def record_counts(self, params: CountsParams) -> None: ...

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from any thread) after this process stores new work."""
        ...

    def remove_listener(self, callback: Callable[[], None]) -> None: ...
    def close(self) -> None: ...


class Notifier:
    """In-process wake-ups: an enqueue in this process wakes its idle workers at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def add(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(callback)

    def remove(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback()


class ThreadedBackend:
    """The async ``Backend`` over a blocking ``SyncStore``."""

    def __init__(self, store: SyncStore) -> None:
        self.store = store
        self.capabilities = store.capabilities
        self._executor: ThreadPoolExecutor | None = None
        #: When a wait last ended on a change (monotonic): waits poll for a while after it.
        self._changed_at = 0.0

    @property
    def blocking(self) -> SyncBackend:
        return self.store

    async def run_blocking(self, fn: Callable[..., T], *args: object) -> T:
        """Run one of the store's calls where its blocking I/O belongs."""
        return await self._run(fn, *args)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if not self.store.blocks:
            return fn(*args)
        if self._executor is None:  # (re)opened on first use, so close() is not final
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="offload-store")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def enqueue(self, params: EnqueueParams) -> list[JobRecord]:
        return await self._run(self.store.enqueue, params)

    async def claim(self, params: ClaimParams) -> list[JobRecord]:
        return await self._run(self.store.claim, params)

    async def heartbeat(self, params: HeartbeatParams) -> HeartbeatResult:
        return await self._run(self.store.heartbeat, params)

    async def finish(self, params: FinishParams) -> FinishResult:
        return await self._run(self.store.finish, params)

    async def report_progress(self, params: ProgressParams) -> None:
        await self._run(self.store.report_progress, params)

    async def cancel(self, params: IdsParams) -> list[JobRecord]:
        return await self._run(self.store.cancel, params)

    async def retry(self, params: IdsParams) -> list[JobRecord]:
        return await self._run(self.store.retry, params)

    async def get(self, params: IdsParams) -> list[JobRecord]:
        return await self._run(self.store.get, params)

    async def query(self, params: QueryParams) -> Page:
        return await self._run(self.store.query, params)

    async def stats(self) -> list[QueueStats]:
        return await self._run(self.store.stats)

    async def promote_due(self) -> int:
        return await self._run(self.store.promote_due)

    async def reap_expired(self, params: ReapParams) -> list[ReapedJob]:
        return await self._run(self.store.reap_expired, params)

    async def prune(self, params: PruneParams) -> int:
        return await self._run(self.store.prune, params)

    async def purge(self, params: PurgeParams) -> int:
        return await self._run(self.store.purge, params)

    async def count(self, params: CountParams) -> int:
        return await self._run(self.store.count, params)

    async def delete(self, params: IdsParams) -> list[str]:
        return await self._run(self.store.delete, params)

    def subscribe(self, params: SubscribeParams = ALL_EVENTS) -> EventStream:
        return TailStream(self, params.kinds)

    async def publish(self, params: PublishParams) -> None:
        await self._run(self.store.publish, params)

    async def beat_worker(self, params: WorkerBeatParams) -> None:
        await self._run(self.store.beat_worker, params)

    async def remove_worker(self, params: IdsParams) -> None:
        await self._run(self.store.remove_worker, params)

    async def workers(self) -> list[WorkerInfo]:
        return await self._run(self.store.workers)

    async def batches(self, params: BatchQueryParams) -> list[BatchRecord]:
        return await self._run(self.store.batches, params)

    async def record_counts(self, params: CountsParams) -> None:
        await self._run(self.store.record_counts, params)

    async def read_counts(self, params: CountsQuery) -> list[MinuteCounts]:
        return await self._run(self.store.read_counts, params)

    async def lock(self, params: LockParams) -> bool:
        return await self._run(self.store.lock, params)

    async def unlock(self, params: LockParams) -> None:
        await self._run(self.store.unlock, params)

    async def get_marks(self, params: MarkNamesParams) -> dict[str, str]:
        return await self._run(self.store.get_marks, params)

    async def set_mark(self, params: MarkParams) -> bool:
        return await self._run(self.store.set_mark, params)

    async def now(self) -> float:
        return self.store.now()

    async def wait(self, params: WaitParams) -> list[JobRecord] | None:
        await self._sleep(params)
        return None

    async def _sleep(self, params: WaitParams) -> None:
        """Until work may be ready, the next scheduled job is due, or the timeout.

        Another process's commit shows as a change of the store's file. While commits
        keep coming, the waiter polls that file's marker (after 2 ms, then 4, then every
        5 ms), which has proved the quickest way to catch the next job on a busy
        machine. Once nothing has changed for ``QUIET_S`` it arms a file watch instead
        (where the OS has one), and an idle worker costs nothing until the next commit.
        """
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(woken.set)

        self.store.add_listener(wake)
        end_watch: Callable[[], None] | None = None
        try:
            marker = self.store.change_marker()
            path = self.store.changed_file() if marker is not None else None
            next_ready = await self._run(self.store.next_ready_at, params.queues)
            now = self.store.now()
            if next_ready is not None and next_ready <= now:
                return
            deadline = time.monotonic() + params.timeout_s
            if next_ready is not None:
                deadline = min(deadline, time.monotonic() + (next_ready - now))
            interval_s = MIN_POLL_INTERVAL_S
            while not woken.is_set():
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    return
                quiet = time.monotonic() - self._changed_at > QUIET_S
                if path is not None and end_watch is None and quiet:
                    end_watch = watch_file(path, loop, woken.set)
                    if end_watch is not None and self.store.change_marker() != marker:
                        break  # changed while the watch was being armed
                polling = marker is not None and end_watch is None
                poll_s = min(interval_s, remaining_s) if polling else remaining_s
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll_s):
                        await woken.wait()
                if polling and self.store.change_marker() != marker:
                    break
                interval_s = min(interval_s * 2, MAX_POLL_INTERVAL_S)
            self._changed_at = time.monotonic()
        finally:
            self.store.remove_listener(wake)
            if end_watch is not None:
                end_watch()

    async def close(self) -> None:
        """Release connections and the I/O thread; the next call opens them again."""
        if self._executor is not None:
            await self._run(self.store.close)
            self._executor.shutdown(wait=True)
            self._executor = None
        self.store.close()
