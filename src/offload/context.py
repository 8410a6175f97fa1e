"""``current_job()``: what a running task may ask about, and tell about, its job."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar

ProgressSink = Callable[[float, str | None], None]


class JobContext:
    """Handed to the running task: its job's identity, progress reports and cancellation."""

    __slots__ = ("_cancelled", "_report", "attempt", "id", "max_attempts", "task")

    def __init__(
        self,
        *,
        id: str,
        task: str,
        attempt: int,
        max_attempts: int,
        report: ProgressSink,
        cancelled: threading.Event,
    ) -> None:
        self.id = id
        self.task = task
        self.attempt = attempt
        self.max_attempts = max_attempts
        self._report = report
        self._cancelled = cancelled

    def set_progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress as a fraction in 0..1 and an optional message for people."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress must be a fraction between 0 and 1, got {fraction}")
        self._report(float(fraction), message)

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
