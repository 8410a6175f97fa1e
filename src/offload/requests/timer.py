"""What both middlewares share: the tally of this process, and its writer in the background.

Nothing here may fail or slow a request: a request only adds to the tally in memory; a
daemon thread (WSGI) or a task on the server's event loop (ASGI) writes it every
``flush_every_s``; a store that does not answer is logged and the tally kept to be
written later. The last write happens at the ASGI lifespan's shutdown, on ``close()``,
or else at exit. A forked process (a pre-forking server) starts a tally of its own: the
rows are the source's, and two processes writing one source's rows would overwrite
each other's.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import secrets
import socket
import threading
from typing import TYPE_CHECKING

from offload import bounds
from offload.backends.base import BackendError
from offload.errors import ConfigurationError
from offload.ops import run_async, run_sync
from offload.requests.tally import KEEP_MINUTES, RequestTally, Taken, write
from offload.storeclock import StoreClock

if TYPE_CHECKING:
    from offload.app import Offload

log = logging.getLogger("offload.requests")

#: The one-minute rule: no synchronous request should take longer.
DEFAULT_THRESHOLD_S = 60.0
DEFAULT_FLUSH_EVERY_S = 5.0


def checked_app_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 200 or not name.isprintable():
        raise ConfigurationError(f"name must be a short printable non-empty string, got {name!r}")
    return name


class RequestTimer:
    """Times one app's requests into the store of ``offload_app`` under ``name``."""

    def __init__(
        self, offload_app: Offload, *, name: str, threshold_s: float = DEFAULT_THRESHOLD_S,
        flush_every_s: float = DEFAULT_FLUSH_EVERY_S,
    ) -> None:  # fmt: skip
        self.app = offload_app
        self.name = checked_app_name(name)
        self.threshold_s = bounds.duration_s(threshold_s, "threshold_s")
        self.flush_every_s = bounds.duration_s(flush_every_s, "flush_every_s")
        self._clock = StoreClock(offload_app.now)
        self._start_lock = threading.Lock()
        self._write_lock = threading.Lock()  # one write at a time: an older one must not win
        self._pid = 0  # the process the tally belongs to (0: not started)
        self.tally = RequestTally(self.name, "", self.threshold_s)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False  # the last write failed (said once, not every few seconds)

    # -- the request path ------------------------------------------------------
    def record(self, duration_s: float, method: str, path: str) -> None:
        """Count one ended request; never raises (a request must not fail for its timing)."""
        try:
            self.tally.add(duration_s, method, path, self._clock.from_local(self.app.now()))
        except Exception:
            log.exception("cannot count a request of %s", self.name)

    def started_sync(self) -> None:
        """A request starts in a WSGI server: the writer thread runs in this process."""
        if self._pid != os.getpid():
            try:
                self._begin(thread=True)
            except Exception:
                log.exception("cannot start writing the request counts of %s", self.name)

    def started_async(self) -> None:
        """A request starts in an ASGI server: the writer task runs on its event loop."""
        try:
            if self._pid != os.getpid():
                self._begin(thread=False)
            task, loop = self._task, asyncio.get_running_loop()
            if task is None or task.done() or task.get_loop() is not loop:
                self._task = loop.create_task(self._write_forever())
        except Exception:
            log.exception("cannot start writing the request counts of %s", self.name)

    def _begin(self, *, thread: bool) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            source = f"http:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
            self.tally = RequestTally(self.name, source, self.threshold_s)
            self._thread, self._task = None, None  # a parent's are not ours
            self._stop = threading.Event()
            if thread:
                self._thread = threading.Thread(
                    target=self._write_forever_blocking, name=f"offload-requests-{self.name}",
                    daemon=True,
                )  # fmt: skip
                self._thread.start()
            atexit.register(self._at_exit)
            self._pid = os.getpid()

    # -- writing ---------------------------------------------------------------
    def _written(self, ok: bool, exc: BaseException | None = None) -> bool:
        """Forget what is written; say once that the store fails, and once that it is back."""
        if ok:
            if self._failing:
                log.warning("the request counts of %s are written again", self.name)
            self._failing = False
            now_minute = int(self._clock.from_local(self.app.now()) // 60)
            self.tally.forget_before(now_minute - KEEP_MINUTES)
            return True
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        if isinstance(exc, BackendError):
            log.log(level, "cannot write the request counts of %s (%s); kept for the next try",
                    self.name, exc)  # fmt: skip
        else:
            log.log(level, "cannot write the request counts of %s; kept for the next try",
                    self.name, exc_info=exc)  # fmt: skip
        return False

    def flush(self) -> bool:
        """Write what changed now, blocking (never from a running event loop: ``aclose``);
        False, and kept for later, if the store failed."""
        with self._write_lock:
            taken = self.tally.take()
            if taken is None:
                return self._written(True)
            try:
                blocking = self.app.backend.blocking
                self._clock.now_blocking(blocking)  # the offset, kept fresh
                run_sync(blocking, write(taken, self.name, self._ttl_s))
            except Exception as exc:
                self.tally.give_back(taken)
                return self._written(False, exc)
            return self._written(True)

    async def _write_async(self, taken: Taken) -> None:
        await self._clock.now(self.app.backend)  # the offset, kept fresh
        await run_async(self.app.backend, write(taken, self.name, self._ttl_s))

    async def flush_async(self) -> bool:
        """Write what changed now, on the running loop (the server's async store client)."""
        taken = self.tally.take()
        if taken is None:
            return self._written(True)
        try:
            await self._write_async(taken)
        except BaseException as exc:
            self.tally.give_back(taken)
            if not isinstance(exc, Exception):
                raise  # cancelled: written next time
            return self._written(False, exc)
        return self._written(True)

    @property
    def _ttl_s(self) -> float:
        return self.app.counts_retention_s

    def _write_forever_blocking(self) -> None:
        stop = self._stop
        while not stop.wait(self.flush_every_s):
            self.flush()

    async def _write_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_every_s)
            await self.flush_async()

    # -- the end ---------------------------------------------------------------
    def close(self) -> bool:
        """Stop the writer and write what is left (blocking); False if the store failed."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.flush_every_s + 1.0)
        self._thread = None
        atexit.unregister(self._at_exit)
        try:
            return self.flush()
        finally:
            self._pid = 0  # a request after this starts over

    async def aclose(self) -> bool:
        """Stop the writer task and write what is left (at the ASGI lifespan's shutdown)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            if task.get_loop() is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._stop.set()
        atexit.unregister(self._at_exit)
        try:
            return await self.flush_async()
        finally:
            self._pid = 0

    def _at_exit(self) -> None:
        if self._pid == os.getpid() and self.tally.pending:
            self.flush()
