"""Where a task's code runs: on the event loop, in a thread, or in a child process.

An executor runs one call and is told to stop by cancellation of the awaiting
coroutine: async code is cancelled, a thread sees ``current_job().cancelled``
(Python cannot stop a thread), a child process is killed.

Task threads are daemon threads of this module's own pool: a thread left running by a
timed-out or stopped task never delays a later call (the pool grows a fresh thread) and
never keeps the process alive at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from offload.context import JobContext, set_current_job
from offload.task import Task


@dataclass
class Invocation:
    task: Task[Any, Any]
    payload: bytes
    args: list[Any]
    kwargs: dict[str, Any]
    context: JobContext
    cancelled: threading.Event
    #: Set when the call was cancelled while its thread still ran (it is left behind).
    abandoned: bool = False


class Executor(Protocol):
    async def start(self) -> None: ...

    async def run(self, call: Invocation) -> bytes:
        """Run the call and return its encoded result; raise what the task raised."""
        ...

    async def close(self) -> None: ...


def _run_sync(call: Invocation) -> Any:
    set_current_job(call.context)
    try:
        return call.task.fn(*call.args, **call.kwargs)
    finally:
        set_current_job(None)


class TaskThreads:
    """Daemon threads, one call each at a time, fed from one queue. A call never waits
    behind a busy thread: each call reserves an idle thread, or starts a new one; at most
    ``keep`` idle threads are kept.

    The hand-off is a ``queue.SimpleQueue`` (one C-level put, no Python lock or condition
    per call): at a few thousand calls a second, the hand-off was a seventh of the
    event loop's time.
    """

    def __init__(self, keep: int, name_prefix: str = "offload-task") -> None:
        self._keep = keep
        self._prefix = name_prefix
        self._lock = threading.Lock()
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._idle = 0  # threads waiting on the queue and not reserved by a call
        self._started = 0
        self._closed = False

    def submit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on a thread of its own; it reports its own outcome."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the task threads are closed")
            if self._idle:
                self._idle -= 1  # reserved: that thread takes this call or an equal one
            else:
                self._started += 1
                name = f"{self._prefix}-{self._started}"
                threading.Thread(target=self._main, name=name, daemon=True).start()
        self._calls.put(fn)

    def _main(self) -> None:
        while True:
            fn = self._calls.get()
            if fn is None:
                return
            fn()  # never raises: the call reports its own outcome
            del fn
            with self._lock:
                if self._closed or self._idle >= self._keep:
                    return
                self._idle += 1

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._calls.put(None)


class LocalExecutor:
    """``async def`` tasks on the event loop, ``def`` tasks on task threads."""

    def __init__(self, threads: int) -> None:
        self._threads = TaskThreads(keep=threads)
        self.abandoned_threads = 0

    async def start(self) -> None:
        pass

    async def run(self, call: Invocation) -> bytes:
        if call.task.is_async:
            token = set_current_job(call.context)
            try:
                result = await call.task.fn(*call.args, **call.kwargs)
            finally:
                set_current_job(None)
                del token
            return call.task.codec.encode_result(result)
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[Any] = loop.create_future()
        context = contextvars.copy_context()
        finished: list[bool] = []  # appended by the thread once the call returned

        def report(result: Any, exc: BaseException | None) -> None:
            if ended.done():  # the caller was cancelled and has gone on
                return
            if exc is None:
                ended.set_result(result)
            else:
                ended.set_exception(exc)

        def in_thread() -> None:
            try:
                result, exc = context.run(_run_sync, call), None
            except BaseException as error:
                result, exc = None, error
            finished.append(True)
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(report, result, exc)

        self._threads.submit(in_thread)
        try:
            result = await ended
        except asyncio.CancelledError:
            call.cancelled.set()  # the thread cannot be stopped: it is told, and left behind
            if not finished:
                self.abandoned_threads += 1
                call.abandoned = True
            raise
        return call.task.codec.encode_result(result)

    async def close(self) -> None:
        self._threads.close()


ExecutorFactory = Callable[[], Executor]
