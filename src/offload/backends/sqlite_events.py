"""SQLite's live events and worker registry.

A step appends one row to ``offload_events`` (its events as one JSON array) in the
step's own transaction, so the log holds exactly the steps that were taken, in
commit order: writers are serialised by ``BEGIN IMMEDIATE``, so a sequence number
never commits after a higher one. Subscribers tail the log (``event_tail``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Container, Iterable, Sequence
from typing import Any

import msgspec

from offload.backends.base import Outcome, OutcomeKind
from offload.backends.event_wire import EVENT_RETENTION_S, decode_events, encode_events
from offload.backends.sqlite_connect import Connections
from offload.backends.sqlite_schema import Q
from offload.records import (
    CONTROL_KINDS,
    AttemptOutcome,
    EventKind,
    JobEvent,
    JobRecord,
    WorkerInfo,
)
from offload.states import JobState

_STATES = {s.value: s for s in JobState}
_encode = msgspec.json.encode
_decode_worker = msgspec.json.Decoder(WorkerInfo).decode

#: outcome -> (how its attempt ended, the event subscribers get, the job's state after)
ENDINGS: dict[OutcomeKind, tuple[AttemptOutcome, EventKind, JobState]] = {
    OutcomeKind.SUCCEEDED: (AttemptOutcome.SUCCEEDED, EventKind.SUCCEEDED, JobState.SUCCEEDED),
    OutcomeKind.RETRY: (AttemptOutcome.FAILED, EventKind.RETRYING, JobState.SCHEDULED),
    OutcomeKind.DEAD: (AttemptOutcome.FAILED, EventKind.DEAD, JobState.DEAD),
    OutcomeKind.CANCELLED: (AttemptOutcome.CANCELLED, EventKind.CANCELLED, JobState.CANCELLED),
    OutcomeKind.RELEASE: (AttemptOutcome.RELEASED, EventKind.REQUEUED, JobState.QUEUED),
    OutcomeKind.DEFER: (AttemptOutcome.DEFERRED, EventKind.REQUEUED, JobState.SCHEDULED),
}
#: Outcomes that hand the attempt back uncounted.
_UNCOUNTED = (OutcomeKind.RELEASE, OutcomeKind.DEFER)


class LoggedEvent(JobEvent, omit_defaults=True, frozen=True, kw_only=True):
    """A ``JobEvent`` written without the fields left at their defaults: every step writes
    its events to the database file, and a subscriber's decoder puts them back."""


def record_event(kind: EventKind, job: JobRecord, at: float) -> JobEvent:
    """The event of a job this step stored or claimed (``event_wire.job_event``'s fields)."""
    return LoggedEvent(
        kind=kind,
        id=job.id,
        queue=job.queue,
        state=job.state,
        task=job.task,
        owner=job.owner,
        batch=job.batch,
        attempt=job.attempt,
        progress=job.progress,
        worker=job.worker,
        at=at,
    )


class HeldJobs:
    """What the events of the jobs this process claimed carry, kept until their finish.

    While a lease (id, delivery) holds, only its holder changes what a job's event
    carries (its progress, through ``report_progress``), so this process's finish
    builds its events from here rather than reading the rows back (a SELECT per finish
    cost a tenth of the store's time in a drain), and reads a job's follow-ups only if
    it has some. A finish that finds no entry (a claim made by another process, an entry
    dropped past ``MAX_JOBS``) reads the rows instead.
    """

    #: Entries kept at most: a job claimed here but never finished here must not leak.
    MAX_JOBS = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: id -> [delivery, queue, task, owner, batch, attempt, progress, worker, has follow-ups]
        self._jobs: dict[str, list[Any]] = {}

    def claimed(self, jobs: Iterable[JobRecord], with_follow_ups: Container[str]) -> None:
        with self._lock:
            for j in jobs:
                self._jobs[j.id] = [
                    j.delivery, j.queue, j.task, j.owner, j.batch, j.attempt, j.progress, j.worker,
                    j.id in with_follow_ups,
                ]  # fmt: skip
            while len(self._jobs) > self.MAX_JOBS:
                del self._jobs[next(iter(self._jobs))]

    def progressed(self, job_id: str, delivery: int, progress: float) -> None:
        with self._lock:
            held = self._jobs.get(job_id)
            if held is not None and held[0] == delivery:
                held[6] = progress

    def finished(
        self, outcome: Outcome, at: float, message: str | None
    ) -> tuple[JobEvent, bool] | None:
        """The event of a taken outcome on a job claimed here, and whether the job has
        follow-ups (None if not known here)."""
        with self._lock:
            held = self._jobs.pop(outcome.id, None)
        if held is None or held[0] != outcome.delivery:
            return None
        _, kind, state = ENDINGS[outcome.kind]
        event = LoggedEvent(
            kind=kind,
            id=outcome.id,
            queue=held[1],
            state=state,
            task=held[2],
            owner=held[3],
            batch=held[4],
            attempt=held[5] - 1 if outcome.kind in _UNCOUNTED else held[5],
            progress=1.0 if outcome.kind is OutcomeKind.SUCCEEDED else held[6],
            message=message,
            worker=held[7],
            at=at,
        )
        return event, held[8]

    def ending(self, outcome: Outcome) -> tuple[str | None, bool] | None:
        """A taken outcome's job's batch and whether it has follow-ups, when no event is
        wanted (None if not known here)."""
        with self._lock:
            held = self._jobs.pop(outcome.id, None)
        if held is None or held[0] != outcome.delivery:
            return None
        return held[4], held[8]

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)


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
    return LoggedEvent(
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


class Listened:
    """Whether a subscriber wants more than the control kinds, asked in each step.

    The log is written in every step's transaction, so a store nobody listens to would
    pay for every event of every job (a fifth of a drain's time, and a file twice the
    size). Steps log the control kinds always (workers follow those) and the rest only
    while a subscriber's mark lasts. A subscriber writes its mark before it reads the
    log's end and the current state, and steps ask in their own write transaction
    (writers are serialised), so no step after that read misses it: there is no gap.
    A mark's end only moves later, so one seen holds until then without asking again.
    """

    def __init__(self) -> None:
        self._until = 0.0

    def __call__(self, conn: sqlite3.Connection, now: float) -> bool:
        if now < self._until:
            return True
        row = conn.execute(Q["listened"]).fetchone()
        until = row[0] if row is not None and isinstance(row[0], (int, float)) else 0.0
        self._until = float(until)
        return now < until


def listen(conn: sqlite3.Connection, now: float, ttl_s: float) -> int:
    """Mark the log as listened to for ``ttl_s`` more; the newest step's number."""
    conn.execute(Q["listen"], (now + ttl_s,))
    return last_event_seq(conn)


def log_events(
    conn: sqlite3.Connection, events: Sequence[JobEvent], now: float, listened: bool = True
) -> bool:
    """Append one step's events in the caller's transaction (only the control kinds when
    nobody listens to more); False when none were logged."""
    if not listened:
        events = [e for e in events if e.kind in CONTROL_KINDS]
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
