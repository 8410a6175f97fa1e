"""What a person may ask the management API for, checked before any store sees it."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from datetime import datetime

from offload import bounds
from offload.backends.base import JobFilter
from offload.errors import ConfigurationError, InvalidQuery
from offload.states import JobState

MAX_TEXT_CHARS = 200
MAX_NAME_CHARS = 200
MAX_PAGE = 1000
_CURSOR_PREFIX = "j1:"
STATE_NAMES = ", ".join(s.value for s in JobState)


def states(value: str | JobState | Iterable[str | JobState] | None) -> list[JobState]:
    if value is None:
        return []
    if isinstance(value, (str, JobState)):
        items: list[object] = [value]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    else:
        raise InvalidQuery(f"state must be a state name or a list of them: {STATE_NAMES}")
    out: list[JobState] = []
    for item in items:
        try:
            state = JobState(item)  # type: ignore[arg-type]
        except ValueError:
            raise InvalidQuery(f"unknown state {item!r}: use one of {STATE_NAMES}") from None
        if state not in out:  # a long list of repeats stays one of each
            out.append(state)
    return out


def _name(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    return checked_name(field, value)


def checked_name(field: str, value: object) -> str:
    """An id or name as offload stores them: short printable text."""
    if not isinstance(value, str):
        raise InvalidQuery(f"{field} must be text, got {type(value).__name__}")
    if not value or len(value) > MAX_NAME_CHARS or not value.isprintable():
        raise InvalidQuery(
            f"{field} must be 1 to {MAX_NAME_CHARS} printable characters, got {value!r:.80}"
        )
    return value


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidQuery(f"search text must be text, got {type(value).__name__}")
    value = value.strip()
    if not value.isprintable():
        raise InvalidQuery("search text must be printable (no NUL or control characters)")
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidQuery(f"search text is limited to {MAX_TEXT_CHARS} characters")
    return value or None


def _time(field: str, value: float | datetime | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidQuery(f"{field}: give a timezone-aware datetime (e.g. with tzinfo=UTC)")
        return value.timestamp()
    return time_s(field, value)


def time_s(field: str, value: object) -> float:
    """A time in seconds since the epoch that every store can compare."""
    try:
        return bounds.timestamp_s(value, field)
    except ConfigurationError as exc:
        raise InvalidQuery(f"{exc} (seconds since the epoch, or a datetime)") from None


def job_filter(
    *,
    state: str | JobState | Iterable[str | JobState] | None = None,
    queue: str | None = None,
    task: str | None = None,
    owner: str | None = None,
    batch: str | None = None,
    text: str | None = None,
    created_after: float | datetime | None = None,
    created_before: float | datetime | None = None,
) -> JobFilter:
    """A checked filter: every mistake is named before the store is asked."""
    after = _time("created_after", created_after)
    before = _time("created_before", created_before)
    if after is not None and before is not None and after >= before:
        raise InvalidQuery("created_after must come before created_before")
    return JobFilter(
        states=states(state),
        queue=_name("queue", queue),
        task=_name("task", task),
        owner=_name("owner", owner),
        batch=_name("batch", batch),
        text=_text(text),
        created_after=after,
        created_before=before,
    )


def is_everything(f: JobFilter) -> bool:
    """Whether the filter names nothing, so that it matches every job stored."""
    return not f.states and all(
        value is None
        for value in (f.queue, f.task, f.owner, f.batch, f.text, f.created_after,
                      f.created_before)
    )  # fmt: skip


def page_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidQuery(f"limit must be a whole number from 1 to {MAX_PAGE}, got {limit!r}")
    return limit


def encode_cursor(job_id: str) -> str:
    return base64.urlsafe_b64encode((_CURSOR_PREFIX + job_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The job id a page ended on; a cursor not made by ``encode_cursor`` is refused."""
    if cursor is None:
        return None
    if not isinstance(cursor, str):
        raise InvalidQuery("cursor must be the text of a next_cursor, passed back unchanged")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raw = ""
    if not raw.startswith(_CURSOR_PREFIX) or len(raw) == len(_CURSOR_PREFIX):
        raise InvalidQuery(
            "malformed cursor: pass back the next_cursor of the previous page unchanged"
        )
    return raw.removeprefix(_CURSOR_PREFIX)
