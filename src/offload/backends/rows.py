"""One stored row, in the column order both SQL backends select, as a ``JobRecord``.

A row written by another version or by hand may not decode. Such a row must never
stop a claim, a listing or a ``get``: it comes back with safe defaults for the
broken columns and ``unreadable`` saying which and why, so a worker dead-letters
that one job and the others it claimed with it run.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from offload.records import Attempt, ErrorInfo, JobRecord
from offload.states import JobState

_decode_error = msgspec.json.Decoder(ErrorInfo).decode
_decode_meta = msgspec.json.Decoder(dict[str, Any]).decode
_decode_attempts = msgspec.json.Decoder(list[Attempt]).decode


#: Columns by the type they must hold. SQLite keeps whatever was written (its columns are
#: only affinities) and a struct does not check types, so the fast path checks them.
_TEXTS = (0, 1, 2, 3)
_OPTIONAL_TEXTS = (14, 16, 22, 23, 24)
#: The attempt history (a JSON array) is the 27th column, where a store keeps one.
ATTEMPTS = 26
_INTS = (5, 6, 7, 8, 9)
_REALS = (10, 15, 19)
_OPTIONAL_REALS = (11, 12, 13, 20, 21)
_NUMBER = (int, float)


def _well_typed(row: tuple[Any, ...]) -> bool:
    for i in _TEXTS:
        if type(row[i]) is not str:
            return False
    for i in _OPTIONAL_TEXTS:
        if row[i] is not None and type(row[i]) is not str:
            return False
    for i in _INTS:
        if type(row[i]) is not int:
            return False
    for i in _REALS:
        if type(row[i]) not in _NUMBER or not math.isfinite(row[i]):
            return False
    for i in _OPTIONAL_REALS:
        value = row[i]
        if value is not None and (type(value) not in _NUMBER or not math.isfinite(value)):
            return False
    return True


def job_from_row(row: tuple[Any, ...]) -> JobRecord:
    if not _well_typed(row):
        return _salvage(row)
    try:
        return JobRecord(
            id=row[0],
            task=row[1],
            queue=row[2],
            state=JobState(row[3]),
            payload=bytes(row[4]),
            priority=row[5],
            attempt=row[6],
            max_attempts=row[7],
            delivery=row[8],
            crashes=row[9],
            run_at=row[10],
            lease_until=row[11],
            lease_s=row[12],
            timeout_s=row[13],
            worker=row[14],
            progress=row[15],
            progress_message=row[16],
            result=None if row[17] is None else bytes(row[17]),
            error=None if row[18] is None else _decode_error(row[18]),
            created_at=row[19],
            started_at=row[20],
            finished_at=row[21],
            key=row[22],
            batch=row[23],
            owner=row[24],
            meta={} if row[25] is None else _decode_meta(row[25]),
            attempts=_attempts(row),
        )
    except Exception:  # the rare row that does not decode: salvage what does
        return _salvage(row)


def _salvage(row: tuple[Any, ...]) -> JobRecord:
    notes: list[str] = []
    state = _field(notes, "state", lambda: JobState(row[3]), JobState.DEAD)
    payload = _field(notes, "payload", lambda: _bytes(row[4]), b"")
    result = _field(notes, "result", lambda: None if row[17] is None else _bytes(row[17]), None)
    error = _field(notes, "error", lambda: None if row[18] is None else _decode_error(row[18]),
                   None)  # fmt: skip
    if error is None and row[18] is not None:
        error = ErrorInfo(type="UnreadableError", message=_text(row[18])[:2000])
    meta = _field(notes, "meta", lambda: {} if row[25] is None else _decode_meta(row[25]), {})
    attempts = _field(notes, "attempts", lambda: _attempts(row), [])
    return JobRecord(
        id=str(row[0]),
        task=_text(row[1]),
        queue=_text(row[2]),
        state=state,
        payload=payload,
        priority=_number(notes, "priority", row[5], int, 0),
        attempt=_number(notes, "attempt", row[6], int, 0),
        max_attempts=_number(notes, "max_attempts", row[7], int, 1),
        delivery=_number(notes, "delivery", row[8], int, 0),
        crashes=_number(notes, "crashes", row[9], int, 0),
        run_at=_number(notes, "run_at", row[10], float, 0.0),
        lease_until=_optional_number(notes, "lease_until", row[11]),
        lease_s=_optional_number(notes, "lease_s", row[12]),
        timeout_s=_optional_number(notes, "timeout_s", row[13]),
        worker=None if row[14] is None else _text(row[14]),
        progress=_number(notes, "progress", row[15], float, 0.0),
        progress_message=None if row[16] is None else _text(row[16]),
        result=result,
        error=error,
        created_at=_number(notes, "created_at", row[19], float, 0.0),
        started_at=_optional_number(notes, "started_at", row[20]),
        finished_at=_optional_number(notes, "finished_at", row[21]),
        key=None if row[22] is None else _text(row[22]),
        batch=None if row[23] is None else _text(row[23]),
        owner=None if row[24] is None else _text(row[24]),
        meta=meta,
        attempts=attempts,
        unreadable="; ".join(notes) or None,  # None: it only needed a lenient reading
    )


def _field(notes: list[str], name: str, decode: Any, default: Any) -> Any:
    try:
        return decode()
    except Exception as exc:
        notes.append(f"{name}: {type(exc).__name__}: {exc}")
        return default


def _attempts(row: tuple[Any, ...]) -> list[Attempt]:
    value = row[ATTEMPTS] if len(row) > ATTEMPTS else None
    return [] if value is None else _decode_attempts(value)


def _bytes(value: Any) -> bytes:
    if value is None:
        raise ValueError("NULL")
    return value.encode() if isinstance(value, str) else bytes(value)


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode(errors="backslashreplace")
    return str(value)


def _number(notes: list[str], name: str, value: Any, kind: type, default: Any) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError) as exc:
        notes.append(f"{name}: {type(exc).__name__}: {exc}")
        return default
    if isinstance(number, float) and not math.isfinite(number):
        notes.append(f"{name}: {number!r} is not a finite number")
        return default
    return number


def _optional_number(notes: list[str], name: str, value: Any) -> float | None:
    return None if value is None else _number(notes, name, value, float, None)
