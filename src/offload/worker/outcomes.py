"""What happens to a job after an attempt: pure decisions, unit-tested on their own."""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass

from offload.backends.base import Outcome, OutcomeKind
from offload.errors import Abort, Retry
from offload.records import ErrorInfo, JobRecord
from offload.retry import BackoffPolicy

MAX_TRACEBACK_CHARS = 20_000
MAX_MESSAGE_CHARS = 8_000
MAX_TYPE_CHARS = 200
#: The longest wait a retry may ask for (a year): longer, infinite or NaN waits are clamped,
#: so no store meets a timestamp it cannot hold.
MAX_RETRY_DELAY_S = 365 * 24 * 3600.0
_CUT = "[...]"


def storable_text(text: str, max_chars: int, *, keep_end: bool = False) -> str:
    """Text every store can hold: lone surrogates escaped (a file name from ``os.listdir``),
    NUL spelled out (PostgreSQL refuses it), at most ``max_chars`` characters."""
    clean = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    if len(clean) > max_chars:
        keep = max(0, max_chars - len(_CUT))
        clean = _CUT + clean[len(clean) - keep :] if keep_end else clean[:keep] + _CUT
    return clean


def storable_error(error: ErrorInfo) -> ErrorInfo:
    """The same error with texts any store can hold (the object itself when already so)."""
    type_ = storable_text(error.type, MAX_TYPE_CHARS)
    message = storable_text(error.message, MAX_MESSAGE_CHARS)
    tb = error.traceback
    if tb is not None:
        tb = storable_text(tb, MAX_TRACEBACK_CHARS, keep_end=True)
    if (type_, message, tb) == (error.type, error.message, error.traceback):
        return error
    return ErrorInfo(type=type_, message=message, traceback=tb)


def clamp_delay_s(delay_s: float, fallback_s: float = 0.0) -> float:
    """A retry delay a store can schedule: NaN takes ``fallback_s``, negative waits none,
    longer than a year (infinite too) waits a year."""
    if math.isnan(delay_s):
        delay_s = fallback_s
    return min(max(0.0, delay_s), MAX_RETRY_DELAY_S)


@dataclass(frozen=True)
class Failure:
    error: ErrorInfo
    retryable: bool
    delay_s: float | None = None


def error_info(exc: BaseException, *, with_traceback: bool = True) -> ErrorInfo:
    tb = None
    if with_traceback:
        tb = "".join(traceback.format_exception(exc))
    try:
        message = str(exc) or type(exc).__name__
    except Exception as str_error:  # a broken __str__ must not hide the failure itself
        message = f"{type(exc).__name__} (its message could not be read: {str_error!r})"
    return storable_error(ErrorInfo(type=type(exc).__name__, message=message, traceback=tb))


def describe_failure(exc: BaseException, retry_on: tuple[type[BaseException], ...]) -> Failure:
    """Classify an exception raised by a task: ``Retry`` asks, ``Abort`` refuses."""
    if isinstance(exc, Retry):
        return Failure(error_info(exc, with_traceback=False), retryable=True, delay_s=exc.delay_s)
    if isinstance(exc, Abort):
        return Failure(error_info(exc), retryable=False)
    return Failure(error_info(exc), retryable=isinstance(exc, retry_on))


def failed(job: JobRecord, failure: Failure, backoff: BackoffPolicy | None) -> Outcome:
    """Retry through ``scheduled`` while attempts are left, otherwise ``dead``."""
    error = storable_error(failure.error)
    if failure.retryable and backoff is not None and job.attempt < job.max_attempts:
        backoff_s = backoff.delay_s(job.attempt)
        delay_s = failure.delay_s if failure.delay_s is not None else backoff_s
        return Outcome(
            id=job.id,
            delivery=job.delivery,
            kind=OutcomeKind.RETRY,
            error=error,
            retry_delay_s=clamp_delay_s(delay_s, clamp_delay_s(backoff_s)),
        )
    return Outcome(id=job.id, delivery=job.delivery, kind=OutcomeKind.DEAD, error=error)


def succeeded(job: JobRecord, result: bytes) -> Outcome:
    return Outcome(id=job.id, delivery=job.delivery, kind=OutcomeKind.SUCCEEDED, result=result)


def released(job: JobRecord) -> Outcome:
    return Outcome(id=job.id, delivery=job.delivery, kind=OutcomeKind.RELEASE)


def left_running(job: JobRecord, lease_s: float) -> Outcome:
    """A graceful stop found the job's ``def`` thread still running: it is not over, so it
    must not start elsewhere at once, yet it did nothing wrong. It waits one lease (the
    worker's process, and the thread with it, ends well before), charged neither a crash
    nor an attempt."""
    return Outcome(id=job.id, delivery=job.delivery, kind=OutcomeKind.DEFER, retry_delay_s=lease_s)


def deferred(job: JobRecord, delay_s: float) -> Outcome:
    """Not run, for a reason that is not the job's (the store was out): later, uncharged."""
    return Outcome(id=job.id, delivery=job.delivery, kind=OutcomeKind.DEFER, retry_delay_s=delay_s)


def poison(job: JobRecord, kind: str, message: str) -> Outcome:
    """A job no retry can fix (unknown task, undecodable payload): dead at once."""
    return Outcome(
        id=job.id,
        delivery=job.delivery,
        kind=OutcomeKind.DEAD,
        error=storable_error(ErrorInfo(type=kind, message=message)),
    )
