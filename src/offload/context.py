"""``current_job()``: what a running task may ask about, and tell about, its job."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from offload.files import FileInfo

ProgressSink = Callable[[float, str | None], None]
#: Stores (data, name) as one of the job's files.
AttachSink = Callable[[Any, str], "FileInfo"]


def _no_files(data: Any, name: str) -> FileInfo:
    raise RuntimeError("this job cannot attach files here (no file store was given)")


class JobContext:
    """Handed to the running task: its job's identity, progress reports and cancellation."""

    __slots__ = ("_attach", "_cancelled", "_report", "attempt", "id", "max_attempts", "task")

    def __init__(
        self,
        *,
        id: str,
        task: str,
        attempt: int,
        max_attempts: int,
        report: ProgressSink,
        cancelled: threading.Event,
        attach: AttachSink = _no_files,
    ) -> None:
        self.id = id
        self.task = task
        self.attempt = attempt
        self.max_attempts = max_attempts
        self._report = report
        self._cancelled = cancelled
        self._attach = attach

    def set_progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress as a fraction in 0..1 and an optional message for people."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress must be a fraction between 0 and 1, got {fraction}")
        self._report(float(fraction), message)

    def attach(self, data: bytes | str | os.PathLike[str], name: str | None = None) -> FileInfo:
        """Keep a file with this job (bytes, or a file's path to copy): listed on the job,
        fetched by its owner, removed with the job. ``name`` defaults to the path's own;
        a second file of one name replaces the first. Blocking I/O: from an ``async def``
        task, a large file goes ``await asyncio.to_thread(current_job().attach, path)``."""
        if name is None:
            if not isinstance(data, str | os.PathLike):
                raise ValueError("attach(bytes) needs a name=, e.g. name='report.pdf'")
            name = os.path.basename(os.fspath(data))
        return self._attach(data, name)

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled or timed out: a sync task should stop soon."""
        return self._cancelled.is_set()


_current: ContextVar[JobContext | None] = ContextVar("offload_current_job", default=None)


def current_job() -> JobContext:
    context = _current.get()
    if context is None:
        raise RuntimeError("current_job() is only available inside a running offload task")
    return context


def set_current_job(context: JobContext | None) -> object:
    return _current.set(context)
