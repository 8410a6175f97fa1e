"""Where a task's code runs: on the event loop, in a thread, or in a child process.

An executor runs one call and is told to stop by cancellation of the awaiting
coroutine: async code is cancelled, a thread sees ``current_job().cancelled``
(Python cannot stop a thread), a child process is killed.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


class LocalExecutor:
    """``async def`` tasks on the event loop, ``def`` tasks on a thread pool."""

    def __init__(self, threads: int) -> None:
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="offload-task")
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
        future = loop.run_in_executor(
            self._threads, contextvars.copy_context().run, _run_sync, call
        )
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            call.cancelled.set()  # the thread cannot be stopped: it is told, and left behind
            if not future.done():
                self.abandoned_threads += 1
            raise
        return call.task.codec.encode_result(result)

    async def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


ExecutorFactory = Callable[[], Executor]
