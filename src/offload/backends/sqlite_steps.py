"""The SQLite steps that change jobs, each inside the caller's write transaction: they
end the jobs' attempts in SQL (``{push_attempt}``), store what a job's end sets off
(``sqlite_endings``) and return (what the call returns, the events the caller logs with
the step, in the order the step made them).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from offload.backends.base import (
    ClaimParams,
    EnqueueParams,
    Outcome,
    OutcomeKind,
    ProgressUpdate,
    ReapedJob,
)
from offload.backends.rows import job_from_row
from offload.backends.sqlite_counts import add_enqueued
from offload.backends.sqlite_endings import job_ended, open_batch, reopened
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
from offload.records import WORKER_LOST, AttemptOutcome, EventKind, JobEvent, JobRecord
from offload.states import JobState

_LOST = msgspec.json.encode(WORKER_LOST)
#: Events whose message is the job's error.
_FAILED = (EventKind.RETRYING, EventKind.DEAD)
#: The outcomes that make a job final: its end sets off its follow-ups and batch's count.
_FINAL = (OutcomeKind.SUCCEEDED, OutcomeKind.DEAD, OutcomeKind.CANCELLED)
#: The states a deleted job had not ended in (running jobs are never deleted).
_WAITING = (JobState.SCHEDULED.value, JobState.QUEUED.value)


def enqueue_jobs(
    conn: sqlite3.Connection, params: EnqueueParams, now: float
) -> tuple[list[JobRecord], list[JobEvent]]:
    """Store new jobs (a job whose unique key is held returns the holder, and no event),
    open their batch, and count them."""
    stored: list[JobRecord] = []
    out = store_new(conn, params.jobs, now, stored=stored)
    if params.batch is not None:
        open_batch(conn, params.batch, stored, now)
    add_enqueued(conn, stored, now)
    return out, [record_event(EventKind.ENQUEUED, r, now) for r in stored]


def claim_jobs(
    conn: sqlite3.Connection, params: ClaimParams, now: float, *, listened: bool = True
) -> tuple[tuple[list[JobRecord], set[str]], list[JobEvent]]:
    """Lease ready jobs; returns (the jobs, the ids of those with follow-ups), events
    (none when nobody listens: a start is not a control event)."""
    queues = list(params.queues)
    rows = conn.execute(
        _in(Q["claim"], queues),
        [params.worker, now, now, params.lease_s, *queues, now, params.limit],
    ).fetchall()
    jobs = [job_from_row(r) for r in rows]
    with_follow_ups = {j.id for j, r in zip(jobs, rows, strict=True) if r[-1]}
    jobs.sort(key=lambda j: (-j.priority, j.run_at, j.id))
    events = [record_event(EventKind.STARTED, j, now) for j in jobs] if listened else []
    return (jobs, with_follow_ups), events


def finish_outcomes(
    conn: sqlite3.Connection,
    outcomes: Sequence[Outcome],
    held: HeldJobs,
    now: float,
    *,
    listened: bool = True,
) -> tuple[list[str], list[JobEvent]]:
    """Apply each outcome whose lease still holds; returns (ids refused, events). When
    nobody listens, a job claimed here builds no event: only what its end sets off."""
    rejected = []
    taken: list[_Taken] = []
    quiet: list[tuple[str, JobState, str | None, bool]] = []
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
        final = o.kind in _FINAL
        if not listened and not stored:
            ending_known = held.ending(o)
            if ending_known is not None:  # (its batch, whether it has follow-ups)
                batch, has_follow_ups = ending_known
                if final and (has_follow_ups or batch is not None):
                    quiet.append((o.id, ENDINGS[o.kind][2], batch, has_follow_ups))
                continue
        known = held.finished(o, now, message)
        if known is None:
            taken.append(((o.id, kind, message), stored, final, True))
        else:
            taken.append((known[0], stored, final, known[1]))
    events = _finished_events(conn, taken, now)
    if quiet:
        wanted = [job_id for job_id, _, _, has in quiet if has]
        own = dict(conn.execute(_in(Q["follow_ups"], wanted), wanted)) if wanted else {}
        for job_id, state, batch, _ in quiet:
            events += job_ended(conn, job_id, state, batch, own.get(job_id), now)
    return rejected, events


#: per outcome taken: its event if known here, else (its job's id, its event's kind and
#: message) to read; the follow-ups it stored; whether the job is final now; whether the
#: job may have follow-ups of its own (to read)
_Taken = tuple[JobEvent | tuple[str, EventKind, str | None], list[JobRecord], bool, bool]


def _finished_events(conn: sqlite3.Connection, taken: list[_Taken], now: float) -> list[JobEvent]:
    """Each taken outcome's event, then its follow-ups', then what its end set off (a job
    is taken once per finish: its lease is gone after); those not known here are read
    from their rows, and a job's own follow-ups only if it has some."""
    ids = [event[0] for event, *_ in taken if isinstance(event, tuple)]
    rows = {r[0]: r for r in conn.execute(_in(Q["finished_events"], ids), ids)} if ids else {}
    wanted = [e.id for e, _, final, has in taken if final and has and isinstance(e, JobEvent)]
    follow_ups = dict(conn.execute(_in(Q["follow_ups"], wanted), wanted)) if wanted else {}
    events: list[JobEvent] = []
    for known, stored, final, _ in taken:
        if isinstance(known, tuple):
            job_id, kind, message = known
            row = rows[job_id]
            event = event_of_row(kind, row, now, message)
            own = row[10]
        else:
            event, own = known, follow_ups.get(known.id)
        events.append(event)
        events += [record_event(EventKind.ENQUEUED, r, now) for r in stored]
        if final and (own is not None or event.batch is not None):
            events += job_ended(conn, event.id, event.state, event.batch, own, now)
    return events


def cancel_jobs(
    conn: sqlite3.Connection, ids: Sequence[str], now: float
) -> tuple[None, list[JobEvent]]:
    ending = (json_time(now), AttemptOutcome.CANCELLED.value, None)
    rows = conn.execute(_in(Q["cancel"], ids), [now, *ending, *ids]).fetchall()
    events = []
    for r in in_given_order(rows, ids):  # each one ended here
        events.append(event_of_row(EventKind.CANCELLED, r, now))
        events += job_ended(conn, r[0], JobState.CANCELLED, r[5], r[10], now)
    return None, events


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
    reopened(conn, [e.batch for e in events if e.batch is not None])
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
    events = []
    for job, row in zip(reaped, rows, strict=True):
        dead = job.state is JobState.DEAD
        kind = EventKind.DEAD if dead else EventKind.REQUEUED
        events.append(event_of_row(kind, row, now, WORKER_LOST.message))
        if dead:
            events += job_ended(conn, job.id, job.state, row[5], row[10], now)
    return reaped, events


def delete_jobs(
    conn: sqlite3.Connection, ids: Sequence[str], now: float
) -> tuple[list[str], list[JobEvent]]:
    """Forget the jobs not running; returns (their ids in the given order, events). A job
    that had not ended never will: its batch stops waiting for it."""
    rows = in_given_order(conn.execute(_in(Q["delete"], ids), ids).fetchall(), ids)
    events = []
    for r in rows:
        events.append(event_of_row(EventKind.DELETED, r, now))
        if r[5] is not None and r[2] in _WAITING:
            events += job_ended(conn, r[0], None, r[5], None, now)
    return [r[0] for r in rows], events
