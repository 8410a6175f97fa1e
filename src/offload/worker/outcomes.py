"""What happens to a job after an attempt: pure decisions, unit-tested on their own."""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from offload.backends.base import Outcome, OutcomeKind
from offload.errors import Abort, Retry
from offload.records import ErrorInfo, JobRecord
from offload.retry import BackoffPolicy

MAX_TRACEBACK_CHARS = 20_000


@dataclass(frozen=True)
class Failure:
    error: ErrorInfo
    retryable: bool
    delay_s: float | None = None


def error_info(exc: BaseException, *, with_traceback: bool = True) -> ErrorInfo:
    tb = None
    if with_traceback:
        tb = "".join(traceback.format_exception(exc))[-MAX_TRACEBACK_CHARS:]
    message = str(exc) or type(exc).__name__
    return ErrorInfo(type=type(exc).__name__, message=message, traceback=tb)


def describe_failure(exc: BaseException, retry_on: tuple[type[BaseException], ...]) -> Failure:
    """Classify an exception raised by a task: ``Retry`` asks, ``Abort`` refuses."""
    if isinstance(exc, Retry):
        return Failure(error_info(exc, with_traceback=False), retryable=True, delay_s=exc.delay_s)
    if isinstance(exc, Abort):
        return Failure(error_info(exc), retryable=False)
    return Failure(error_info(exc), retryable=isinstance(exc, retry_on))


def failed(job: JobRecord, failure: Failure, backoff: BackoffPolicy | None) -> Outcome:
    """Retry through ``scheduled`` while attempts are left, otherwise ``dead``."""
    if failure.retryable and backoff is not None and job.attempt < job.max_attempts:
        delay_s = failure.delay_s if failure.delay_s is not None else backoff.delay_s(job.attempt)
        return Outcome(
            id=job.id,
            delivery=job.delivery,
            kind=OutcomeKind.RETRY,
            error=failure.error,
            retry_delay_s=max(0.0, delay_s),
        )
    return Outcome(id=job.id, delivery=job.delivery, kind=OutcomeKind.DEAD, error=failure.error)


def succeeded(job: JobRecord, result: bytes) -> Outcome:
    return Outcome(id=job.id, delivery=job.delivery, kind=OutcomeKind.SUCCEEDED, result=result)


def released(job: JobRecord) -> Outcome:
    return Outcome(id=job.id, delivery=job.delivery, kind=OutcomeKind.RELEASE)


def poison(job: JobRecord, kind: str, message: str) -> Outcome:
    """A job no retry can fix (unknown task, undecodable payload): dead at once."""
    return Outcome(
        id=job.id,
        delivery=job.delivery,
        kind=OutcomeKind.DEAD,
        error=ErrorInfo(type=kind, message=message),
    )
