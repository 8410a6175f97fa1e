"""Run a real worker in a background thread for a test, and stop it cleanly."""

from __future__ import annotations

import asyncio
import faulthandler
import threading
import time
from collections.abc import Callable
from typing import Any

from offload import Offload
from offload.worker import Worker, WorkerStats


class WorkerThread:
    def __init__(self, app: Offload, **options: Any) -> None:
        self.worker = Worker(app, **options)
        self.stats: WorkerStats | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._ready = threading.Event()

    def _main(self) -> None:
        async def main() -> WorkerStats:
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            return await self.worker.run()

        try:
            self.stats = asyncio.run(main())
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
            self._ready.set()

    def _dump(self) -> None:
        """Where a worker that failed to stop is stuck: every thread, every task."""
        faulthandler.dump_traceback(all_threads=True)
        if self._loop is not None:
            for task in asyncio.all_tasks(self._loop):
                print(f"task {task.get_name()}:")
                awaited: Any = task.get_coro()
                while awaited is not None:  # the await chain, outermost first
                    frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
                    if frame is not None:
                        print(
                            f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
                        )
                    else:
                        print(f"  {awaited!r}")
                    awaited = getattr(awaited, "cr_await", None) or getattr(
                        awaited, "gi_yieldfrom", None
                    )

    def __enter__(self) -> WorkerThread:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self, timeout_s: float = 60) -> WorkerStats:
        if self._thread.is_alive() and self._loop is not None:
            self._loop.call_soon_threadsafe(self.worker.request_stop)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._dump()
        assert not self._thread.is_alive(), "worker did not stop"
        if self.error is not None:
            raise self.error
        assert self.stats is not None
        return self.stats

    def request_stop(self) -> None:
        """Ask for a graceful stop and return at once: ``join`` waits for the exit."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.worker.request_stop)

    def join(self, timeout_s: float = 60) -> WorkerStats:
        """For burst workers, or after ``request_stop``: wait until the worker exits."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._dump()
        assert not self._thread.is_alive(), "burst worker did not exit"
        if self.error is not None:
            raise self.error
        assert self.stats is not None
        return self.stats

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self.stop()


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what or predicate}")
        time.sleep(0.01)
