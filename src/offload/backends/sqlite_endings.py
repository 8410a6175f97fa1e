"""What a job's end sets off in SQLite, stored by the step that ends it: its follow-ups
and its batch's count (``memory_endings`` is the reference).

A job's follow-ups ride on its own row (``follow_ups``, NULL for most jobs), so a step
reads them only for a job that has some. A batch is one row of ``offload_batches`` that
each member's end counts down by id: nothing ever scans a batch's members.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from offload.backends.base import BatchQueryParams
from offload.backends.sqlite_connect import Connections
from offload.backends.sqlite_events import LoggedEvent, in_given_order, record_event
from offload.backends.sqlite_schema import Q, _in
from offload.backends.sqlite_turns import checked, store_new
from offload.records import BatchOpen, BatchRecord, EventKind, FollowUp, JobEvent, JobRecord, NewJob
from offload.states import JobState

log = logging.getLogger(__name__)

_encode = msgspec.json.encode
_decode_follow_ups = msgspec.json.Decoder(list[FollowUp]).decode
_decode_new_job = msgspec.json.Decoder(NewJob).decode
#: The columns the batch queries select, in order.
_BATCH_FIELDS = ("id", "total", "remaining", "created_at", "completed_at", "callback_id")


def open_batch(
    conn: sqlite3.Connection, batch: BatchOpen, stored: Sequence[JobRecord], now: float
) -> None:
    """Open ``batch`` in its members' enqueue step: the jobs it stored with that batch."""
    members = sum(1 for r in stored if r.batch == batch.id)
    callback = batch.callback
    if callback is not None:  # stored by the step that ends the last member: checked now
        checked([FollowUp(on=(), job=callback)])
    conn.execute(
        Q["open_batch"],
        (
            batch.id, members, members, now,
            None if callback is None else _encode(callback),
            None if callback is None else callback.id,
        ),
    )  # fmt: skip


def job_ended(
    conn: sqlite3.Connection,
    job_id: str,
    state: JobState | None,
    batch: str | None,
    follow_ups: Any,
    now: float,
) -> list[JobEvent]:
    """Store what ``job_id`` ending in ``state`` sets off, in the caller's step; returns
    the events, in the in-memory store's order: its batch's progress, then each job stored.

    ``follow_ups`` is the row's column as stored (None: it has none); ``state`` is not a
    final one when a person deletes a job that had not ended (its batch stops waiting).
    """
    due = [] if follow_ups is None else _due(job_id, state, follow_ups)
    events: list[JobEvent] = []
    if batch is not None:
        row = conn.execute(Q["batch_member_ended"], (now, batch)).fetchone()
        if row is not None:  # an open batch (a member may carry a batch nobody opened)
            total, remaining, callback = row
            events.append(_progress_event(batch, total, remaining, now))
            if callback is not None:
                due += _decoded(batch, "callback", callback, _decode_new_job)
    if due:
        stored: list[JobRecord] = []
        store_new(conn, due, now, skip_stored=True, stored=stored)
        events += [record_event(EventKind.ENQUEUED, r, now) for r in stored]
    return events


def _due(job_id: str, state: JobState | None, follow_ups: Any) -> list[NewJob]:
    return [f.job for f in _decoded(job_id, "follow-ups", follow_ups, _decode_follow_ups)
            if state in f.on]  # fmt: skip


def _decoded(owner: str, what: str, value: Any, decode: Any) -> list[Any]:
    """``value`` decoded (a list, or one item made a list); a value that does not decode,
    written by another version or by hand, is skipped (logged): the step goes on."""
    try:
        decoded = decode(value)
    except (msgspec.DecodeError, TypeError, ValueError) as exc:
        log.error("the %s of %r not stored: the stored value does not decode (%s)", what,
                  owner, exc)  # fmt: skip
        return []
    return decoded if isinstance(decoded, list) else [decoded]


def _progress_event(batch: str, total: int, remaining: int, now: float) -> JobEvent:
    done = total - remaining
    return LoggedEvent(
        kind=EventKind.BATCH_PROGRESS,
        batch=batch,
        progress=done / total if total else 1.0,
        message=f"{done} of {total} done",
        at=now,
    )


def reopened(conn: sqlite3.Connection, batches: Sequence[str]) -> None:
    """A person queued final members again: their open batches wait for them once more."""
    conn.executemany(Q["batch_member_reopened"], [(b,) for b in batches])


def list_batches(conn: sqlite3.Connection, params: BatchQueryParams) -> list[BatchRecord]:
    """The given batches (in that order), or the newest; each from its own row."""
    if params.ids:
        ids = list(dict.fromkeys(params.ids))
        rows = in_given_order(conn.execute(_in(Q["batches_by_id"], ids), ids).fetchall(), ids)
        if params.open_only:
            rows = [r for r in rows if r[4] is None]
        rows = rows[: params.limit]
    else:
        query = Q["batches_open"] if params.open_only else Q["batches_newest"]
        rows = conn.execute(query, (params.limit,)).fetchall()
    return [BatchRecord(**dict(zip(_BATCH_FIELDS, r, strict=True))) for r in rows]


def prune_batches(db: Connections, completed_before: float, step: int) -> None:
    """Drop batches completed before ``completed_before``, ``step`` rows per transaction."""
    while True:
        with db.write() as conn:
            deleted = conn.execute(Q["prune_batches"], (completed_before, step)).rowcount
        if deleted < step:
            return
