"""What every store can hold, checked at its boundary before anything is written.

A value one job carries must fail only that job: ``enqueue`` refuses a job whose
fields no store can hold (``ValueRejected`` naming the job and the field) before
a row is written; ``finish`` and ``report_progress`` store what a worker reports
in a form every store can hold (text escaped where it cannot be encoded) rather
than fail a whole batch of outcomes. The checks cost a few comparisons per job
on the hot path; the slow work runs only for values that need it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from offload.backends.base import Outcome, ValueRejected
from offload.records import ErrorInfo, NewJob

#: 9999-12-31T23:59:59Z: the latest time every store can hold (the same bound as Redis's).
MAX_TIME_S = 253_402_300_799.0
#: The longest delay, lease or lifetime: now + this stays below MAX_TIME_S for centuries.
MAX_DURATION_S = 1e10
#: PostgreSQL's integer columns (priority, max_attempts) hold 32 bits.
MAX_INT = 2**31 - 1

_TEXT_FIELDS = ("id", "task", "queue", "key", "batch", "owner")
_encode = msgspec.json.encode


def _reject(job_id: str, field: str, why: str) -> ValueRejected:
    return ValueRejected(f"job {job_id!r}: {field} {why}; nothing was stored")


def check_time(job_id: str, field: str, value: float | None) -> None:
    """An absolute time: finite, from 1970 to year 9999."""
    if value is not None and not 0.0 <= value <= MAX_TIME_S:  # False for NaN
        raise _reject(job_id, field, f"= {value!r} is not a time between 1970 and 9999")


def check_span(job_id: str, field: str, value: float | None) -> None:
    """A duration in seconds: finite, at most ``MAX_DURATION_S`` either way."""
    if value is not None and not -MAX_DURATION_S <= value <= MAX_DURATION_S:
        raise _reject(job_id, field, f"= {value!r} s is not a duration of at most 1e10 s")


def check_new_jobs(jobs: Iterable[NewJob], *, nul_ok: bool = True) -> None:
    """Refuse (``ValueRejected``) the first job whose fields a store cannot hold.

    ``nul_ok`` is False for PostgreSQL, whose text and jsonb cannot hold NUL.
    """
    for job in jobs:
        check_span(job.id, "delay_s", job.delay_s)
        check_time(job.id, "run_at", job.run_at)
        check_span(job.id, "lease_s", job.lease_s)
        check_span(job.id, "timeout_s", job.timeout_s)
        for field in ("priority", "max_attempts"):
            number = getattr(job, field)
            if not -MAX_INT <= number <= MAX_INT:
                raise _reject(job.id, field, f"= {number!r} is out of range")
        for field in _TEXT_FIELDS:
            text = getattr(job, field)
            if text is not None and not (text.isascii() and "\x00" not in text):
                _check_text(job.id, field, text, nul_ok)
        if job.meta:
            try:
                encoded = _encode(job.meta)
            except (UnicodeEncodeError, TypeError, ValueError, RecursionError) as exc:
                raise _reject(job.id, "meta", f"cannot be stored as JSON ({exc})") from exc
            if not nul_ok and b"\\u0000" in encoded and _holds_nul(job.meta):
                raise _reject(job.id, "meta", "holds a NUL character")


def _holds_nul(value: Any) -> bool:
    """A real NUL somewhere in a JSON value (not the six characters backslash-u0000)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def _check_text(job_id: str, field: str, text: str, nul_ok: bool) -> None:
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise _reject(job_id, field, f"holds text that is not valid Unicode ({exc})") from exc
    if not nul_ok and "\x00" in text:
        raise _reject(job_id, field, "holds a NUL character")


def escape_text(text: str, *, nul_ok: bool = True) -> str:
    """``text`` made storable: lone surrogates as ``\\udcff``, NUL as ``\\x00`` if need be."""
    if text.isascii() and (nul_ok or "\x00" not in text):
        return text
    escaped = text.encode("utf-8", "backslashreplace").decode()
    return escaped if nul_ok else escaped.replace("\x00", "\\x00")


def _escape_json(value: Any, nul_ok: bool) -> Any:
    if isinstance(value, str):
        return escape_text(value, nul_ok=nul_ok)
    if isinstance(value, dict):
        return {
            escape_text(str(k), nul_ok=nul_ok): _escape_json(v, nul_ok) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_escape_json(v, nul_ok) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def storable_error(error: ErrorInfo, *, nul_ok: bool = True) -> bytes:
    """The error as JSON every store can hold (a file name from ``os.listdir`` in a
    message must not stop the outcome from being stored)."""
    try:
        encoded = _encode(error)
    except UnicodeEncodeError:
        return _encode(escaped_error(error, nul_ok=nul_ok))
    if not nul_ok and b"\\u0000" in encoded:
        return _encode(escaped_error(error, nul_ok=nul_ok))
    return encoded


def storable_error_info(error: ErrorInfo) -> ErrorInfo:
    """The error as a record every store (and every JSON reader) can hold."""
    try:
        _encode(error)
    except UnicodeEncodeError:
        return escaped_error(error)
    return error


def escaped_error(error: ErrorInfo, *, nul_ok: bool = True) -> ErrorInfo:
    return ErrorInfo(
        type=escape_text(error.type, nul_ok=nul_ok),
        message=escape_text(error.message, nul_ok=nul_ok),
        traceback=None if error.traceback is None else escape_text(error.traceback, nul_ok=nul_ok),
    )


def storable_meta(meta: dict[str, Any], *, nul_ok: bool = True) -> bytes:
    """An outcome's ``meta`` as JSON every store can hold."""
    try:
        encoded = _encode(meta)
    except (UnicodeEncodeError, TypeError, ValueError):
        return _encode(_escape_json(meta, nul_ok))
    if not nul_ok and b"\\u0000" in encoded:
        return _encode(_escape_json(meta, nul_ok))
    return encoded


def check_outcomes(outcomes: Sequence[Outcome], *, nul_ok: bool = True) -> None:
    """Refuse (``ValueRejected`` naming the job) an outcome no store can take: a retry
    delay that is not a finite time, or a follow-up job a store cannot hold."""
    for outcome in outcomes:
        check_span(outcome.id, "retry_delay_s", outcome.retry_delay_s)
        if outcome.follow_ups:
            check_new_jobs(outcome.follow_ups, nul_ok=nul_ok)


def finite_progress(progress: float) -> bool:
    return math.isfinite(progress)
