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
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future
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
    """Daemon threads, one call each at a time. A call never queues behind a busy thread:
    an idle thread takes it, else a new one starts; at most ``keep`` idle threads are kept."""

    def __init__(self, keep: int, name_prefix: str = "offload-task") -> None:
        self._keep = keep
        self._prefix = name_prefix
        self._lock = threading.Lock()
        self._idle: list[_TaskThread] = []
        self._started = 0
        self._closed = False

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the task threads are closed")
            thread = self._idle.pop() if self._idle else None
            if thread is None:
                self._started += 1
                thread = _TaskThread(self, f"{self._prefix}-{self._started}")
        thread.give(fn, future)
        return future

    def _back(self, thread: _TaskThread) -> bool:
        """A thread done with its call: True if it stays for the next one."""
        with self._lock:
            if self._closed or len(self._idle) >= self._keep:
                return False
            self._idle.append(thread)
            return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for thread in idle:
            thread.give(None, None)


class _TaskThread:
    def __init__(self, pool: TaskThreads, name: str) -> None:
        self._pool = pool
        self._work: list[tuple[Callable[[], Any] | None, Future[Any] | None]] = []
        self._ready = threading.Condition()
        threading.Thread(target=self._main, name=name, daemon=True).start()

    def give(self, fn: Callable[[], Any] | None, future: Future[Any] | None) -> None:
        with self._ready:
            self._work.append((fn, future))
            self._ready.notify()

    def _main(self) -> None:
        while True:
            with self._ready:
                while not self._work:
                    self._ready.wait()
                fn, future = self._work.pop(0)
            if fn is None or future is None:
                return
            if future.set_running_or_notify_cancel():
                try:
                    result = fn()
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del fn, future
            if not self._pool._back(self):
                return


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
        context = contextvars.copy_context()
        future = asyncio.wrap_future(self._threads.submit(lambda: context.run(_run_sync, call)))
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            call.cancelled.set()  # the thread cannot be stopped: it is told, and left behind
            if not future.done():
                self.abandoned_threads += 1
                call.abandoned = True
            raise
        return call.task.codec.encode_result(result)

    async def close(self) -> None:
        self._threads.close()


ExecutorFactory = Callable[[], Executor]
