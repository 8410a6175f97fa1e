"""The SQLite steps that change jobs, each inside the caller's write transaction: they
end the jobs' attempts in SQL (``{push_attempt}``) and return (what the call returns,
the events the caller logs with the step, in the order the step made them).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from offload.backends.base import (
    ClaimParams,
    Outcome,
    OutcomeKind,
    ProgressUpdate,
    ReapedJob,
)
from offload.backends.rows import job_from_row
from offload.backends.sqlite_events import (
    ENDINGS,
    HeldJobs,
    event_of_row,
    in_given_order,
    json_time,
    record_event,
)
from offload.backends.sqlite_schema import Q, _in
from offload.backends.sqlite_turns import store_new
from offload.backends.values import (
    escape_text,
    finite_progress,
    storable_error,
    storable_meta,
)
from offload.records import WORKER_LOST, AttemptOutcome, EventKind, JobEvent, JobRecord, NewJob
from offload.states import JobState

_LOST = msgspec.json.encode(WORKER_LOST)
#: Events whose message is the job's error.
_FAILED = (EventKind.RETRYING, EventKind.DEAD)


def enqueue_jobs(
    conn: sqlite3.Connection, jobs: Sequence[NewJob], now: float
) -> tuple[list[JobRecord], list[JobEvent]]:
    """Store new jobs; a job whose unique key is held returns the holder, and no event."""
    stored: list[JobRecord] = []
    out = store_new(conn, jobs, now, stored=stored)
    return out, [record_event(EventKind.ENQUEUED, r, now) for r in stored]


def claim_jobs(
    conn: sqlite3.Connection, params: ClaimParams, now: float
) -> tuple[list[JobRecord], list[JobEvent]]:
    queues = list(params.queues)
    rows = conn.execute(
        _in(Q["claim"], queues),
        [params.worker, now, now, params.lease_s, *queues, now, params.limit],
    ).fetchall()
    jobs = [job_from_row(r) for r in rows]
    jobs.sort(key=lambda j: (-j.priority, j.run_at, j.id))
    return jobs, [record_event(EventKind.STARTED, j, now) for j in jobs]


def finish_outcomes(
    conn: sqlite3.Connection, outcomes: Sequence[Outcome], held: HeldJobs, now: float
) -> tuple[list[str], list[JobEvent]]:
    """Apply each outcome whose lease still holds; returns (ids refused, events)."""
    rejected = []
    #: per outcome taken: its event if known here, else (its job's id, its event's kind and
    #: message) to read; then its follow-ups stored
    taken: list[tuple[JobEvent | tuple[str, EventKind, str | None], list[JobRecord]]] = []
    ended_at = json_time(now)
    for o in outcomes:
        fence = (o.id, o.delivery)
        error = None if o.error is None else storable_error(o.error)
        ending, kind, _ = ENDINGS[o.kind]
        attempt = (ended_at, ending.value, None if error is None else error.decode())
        if o.kind is OutcomeKind.SUCCEEDED:
            args: tuple[Any, ...] = (o.result, now, attempt[2], *attempt, *fence)
            cursor = conn.execute(Q["finish_succeeded"], args)
        elif o.kind is OutcomeKind.RETRY:
            args = (now + o.retry_delay_s, error, *attempt, *fence)
            cursor = conn.execute(Q["finish_retry"], args)
        elif o.kind is OutcomeKind.RELEASE:
            cursor = conn.execute(Q["finish_release"], (*attempt, *fence))
        elif o.kind is OutcomeKind.DEFER:
            args = (now + o.retry_delay_s, *attempt, *fence)
            cursor = conn.execute(Q["finish_defer"], args)
        else:
            args = (o.kind.value, o.result, error, now, *attempt, *fence)
            cursor = conn.execute(Q["finish_ended"], args)
        if not cursor.rowcount:
            held.forget(o.id)
            rejected.append(o.id)
            continue
        message = escape_text(o.error.message) if o.error and kind in _FAILED else None
        stored: list[JobRecord] = []
        if o.meta is not None:
            conn.execute(Q["set_meta"], (storable_meta(o.meta) if o.meta else None, o.id))
        if o.follow_ups:  # in this transaction, and only because the finish was taken
            store_new(conn, o.follow_ups, now, skip_stored=True, stored=stored)
        taken.append((held.finished(o, now, message) or (o.id, kind, message), stored))
    return rejected, _finished_events(conn, taken, now)


def _finished_events(
    conn: sqlite3.Connection,
    taken: list[tuple[JobEvent | tuple[str, EventKind, str | None], list[JobRecord]]],
    now: float,
) -> list[JobEvent]:
    """Each taken outcome's event, then its follow-ups' (a job is taken once per finish:
    its lease is gone after); those not known here are read from their rows."""
    ids = [event[0] for event, _ in taken if isinstance(event, tuple)]
    rows = {r[0]: r for r in conn.execute(_in(Q["finished_events"], ids), ids)} if ids else {}
    events: list[JobEvent] = []
    for known, stored in taken:
        if isinstance(known, tuple):
            job_id, kind, message = known
            events.append(event_of_row(kind, rows[job_id], now, message))
        else:
            events.append(known)
        events += [record_event(EventKind.ENQUEUED, r, now) for r in stored]
    return events


def cancel_jobs(
    conn: sqlite3.Connection, ids: Sequence[str], now: float
) -> tuple[None, list[JobEvent]]:
    ending = (json_time(now), AttemptOutcome.CANCELLED.value, None)
    rows = conn.execute(_in(Q["cancel"], ids), [now, *ending, *ids]).fetchall()
    return None, [event_of_row(EventKind.CANCELLED, r, now) for r in in_given_order(rows, ids)]


def retry_jobs(
    conn: sqlite3.Connection, ids: Sequence[str], now: float
) -> tuple[None, list[JobEvent]]:
    events = []
    for job_id in ids:
        with contextlib.suppress(sqlite3.IntegrityError):
            # its unique key may be held by a newer live job: then it stays as it is
            row = conn.execute(Q["retry"], (now, job_id)).fetchone()
            if row is not None:
                events.append(event_of_row(EventKind.ENQUEUED, row, now))
    return None, events


def report_progress(
    conn: sqlite3.Connection, updates: Sequence[ProgressUpdate], now: float
) -> tuple[list[ProgressUpdate], list[JobEvent]]:
    """Store each update whose lease still holds; returns (those updates, events)."""
    applied = []
    events = []
    for u in updates:  # one by one: only a lease still held makes an event
        if not finite_progress(u.progress):
            continue
        message = None if u.message is None else escape_text(u.message)
        row = conn.execute(Q["progress"], (u.progress, message, u.id, u.delivery)).fetchone()
        if row is not None:
            applied.append(u)
            events.append(event_of_row(EventKind.PROGRESS, row, now))
    return applied, events


def reap_expired(
    conn: sqlite3.Connection, max_crashes: int, now: float
) -> tuple[list[ReapedJob], list[JobEvent]]:
    """Hand back (or bury) the jobs whose lease ran out: their worker is lost."""
    ending = (json_time(now), AttemptOutcome.LOST.value, _LOST.decode())
    args = (_LOST, max_crashes, max_crashes, now, *ending, now)
    rows = conn.execute(Q["reap_expired"], args).fetchall()
    reaped = [ReapedJob(id=r[0], state=JobState(r[2])) for r in rows]
    events = [
        event_of_row(
            EventKind.DEAD if job.state is JobState.DEAD else EventKind.REQUEUED,
            row,
            now,
            WORKER_LOST.message,
        )
        for job, row in zip(reaped, rows, strict=True)
    ]
    return reaped, events


def delete_jobs(
    conn: sqlite3.Connection, ids: Sequence[str], now: float
) -> tuple[list[str], list[JobEvent]]:
    """Forget the jobs not running; returns (their ids in the given order, events)."""
    rows = in_given_order(conn.execute(_in(Q["delete"], ids), ids).fetchall(), ids)
    return [r[0] for r in rows], [event_of_row(EventKind.DELETED, r, now) for r in rows]
