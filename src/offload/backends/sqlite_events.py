"""SQLite's live events and worker registry.

A step appends one row to ``offload_events`` (its events as one JSON array) in the
step's own transaction, so the log holds exactly the steps that were taken, in
commit order: writers are serialised by ``BEGIN IMMEDIATE``, so a sequence number
never commits after a higher one. Subscribers tail the log (``event_tail``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from offload.backends.base import OutcomeKind
from offload.backends.event_wire import EVENT_RETENTION_S, decode_events, encode_events
from offload.backends.sqlite_connect import Connections
from offload.backends.sqlite_schema import Q
from offload.records import AttemptOutcome, EventKind, JobEvent, WorkerInfo
from offload.states import JobState

_STATES = {s.value: s for s in JobState}
_encode = msgspec.json.encode
_decode_worker = msgspec.json.Decoder(WorkerInfo).decode

#: outcome -> (how its attempt ended, the event subscribers get)
ENDINGS: dict[OutcomeKind, tuple[AttemptOutcome, EventKind]] = {
    OutcomeKind.SUCCEEDED: (AttemptOutcome.SUCCEEDED, EventKind.SUCCEEDED),
    OutcomeKind.RETRY: (AttemptOutcome.FAILED, EventKind.RETRYING),
    OutcomeKind.DEAD: (AttemptOutcome.FAILED, EventKind.DEAD),
    OutcomeKind.CANCELLED: (AttemptOutcome.CANCELLED, EventKind.CANCELLED),
    OutcomeKind.RELEASE: (AttemptOutcome.RELEASED, EventKind.REQUEUED),
    OutcomeKind.DEFER: (AttemptOutcome.DEFERRED, EventKind.REQUEUED),
}


def json_time(seconds: float) -> str:
    """A time as JSON text for ``{push_attempt}``, every digit kept."""
    return _encode(seconds).decode()


def event_of_row(
    kind: EventKind, row: tuple[Any, ...], at: float, message: str | None = None
) -> JobEvent:
    """The event of a row selected as ``EVENT_COLUMNS`` (progress carries its message).

    A row written by hand may hold anything: the event is built as it is, and a
    subscriber skips one that does not decode (``event_wire.decode_events``).
    """
    return JobEvent(
        kind=kind,
        id=row[0],
        queue=row[1],
        state=_STATES.get(row[2]),
        task=row[3],
        owner=row[4],
        batch=row[5],
        attempt=row[6],
        progress=row[7],
        message=row[8] if kind is EventKind.PROGRESS else message,
        worker=row[9],
        at=at,
    )


def in_given_order(rows: list[Any], ids: Sequence[str]) -> list[Any]:
    """RETURNING's rows (id first) in the order the caller gave the ids."""
    place = {job_id: i for i, job_id in reversed(list(enumerate(ids)))}
    return sorted(rows, key=lambda row: place.get(row[0], len(place)))


def log_events(conn: sqlite3.Connection, events: Sequence[JobEvent], now: float) -> bool:
    """Append one step's events in the caller's transaction; False when it had none."""
    if not events:
        return False
    try:
        body = encode_events(events)
    except (UnicodeEncodeError, TypeError, ValueError, OverflowError):
        body = _encode_each(events)  # an event no JSON holds must not undo the step
    conn.execute(Q["log_events"], (now, body))
    return True


def _encode_each(events: Sequence[JobEvent]) -> bytes:
    kept = []
    for event in events:
        try:
            kept.append(encode_events([event])[1:-1])
        except (UnicodeEncodeError, TypeError, ValueError, OverflowError):
            continue
    return b"[" + b",".join(kept) + b"]"


def last_event_seq(conn: sqlite3.Connection) -> int:
    return int(conn.execute(Q["last_event_seq"]).fetchone()[0])


def read_events(
    conn: sqlite3.Connection, after_seq: int, limit: int
) -> list[tuple[int, list[JobEvent]]]:
    rows = conn.execute(Q["read_events"], (after_seq, limit)).fetchall()
    return [(seq, decode_events(body)) for seq, body in rows]


def prune_events(db: Connections, now: float, step: int) -> None:
    """Drop events older than ``EVENT_RETENTION_S``, ``step`` numbers per transaction.

    Each step looks only at the oldest ``step`` numbers: an event stamped far ahead by
    a process whose clock runs fast holds back the ones after it until its own time.
    """
    while True:
        with db.write() as conn:
            deleted = conn.execute(Q["prune_events"], (step, now - EVENT_RETENTION_S)).rowcount
        if not deleted:
            return


def beat_worker(conn: sqlite3.Connection, info: WorkerInfo, ttl_s: float, now: float) -> None:
    seen = msgspec.structs.replace(info, last_seen=now)
    conn.execute(Q["beat_worker"], (info.id, _encode(seen), now + ttl_s))


def live_workers(conn: sqlite3.Connection, now: float) -> list[WorkerInfo]:
    """The registry's unexpired workers by id; a row that does not decode is left out."""
    out = []
    for (info,) in conn.execute(Q["live_workers"], (now,)):
        try:
            out.append(_decode_worker(info))
        except (msgspec.DecodeError, TypeError):
            continue
    return out
