"""Events on the wire: how every store writes a step's events and how subscribers read them.

A store writes one JSON array of event objects per step (SQL and Lua build it with
their own JSON functions, so the field names here are the contract). A subscriber
that meets an event it cannot read (another version, a hand-written row) skips that
event, never the whole step: live events are best effort, a dead subscriber is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from offload.records import (
    MAX_ATTEMPTS_KEPT,
    Attempt,
    AttemptOutcome,
    EventKind,
    JobEvent,
    JobRecord,
)

#: Events stay readable this long in stores that keep them (SQLite, memory): a
#: subscriber that falls further behind re-reads the state instead.
EVENT_RETENTION_S = 300.0

_ENCODER = msgspec.json.Encoder()
_ONE = msgspec.json.Decoder(JobEvent)
_MANY = msgspec.json.Decoder(list[JobEvent])
_RAW = msgspec.json.Decoder(list[msgspec.Raw])


def encode_events(events: Sequence[JobEvent]) -> bytes:
    return _ENCODER.encode(events)


def decode_events(raw: bytes | str) -> list[JobEvent]:
    """The step's events that decode; the others are dropped one by one."""
    try:
        return _MANY.decode(raw)
    except msgspec.DecodeError:
        pass
    try:
        items = _RAW.decode(raw)
    except msgspec.DecodeError:
        return []
    out = []
    for item in items:
        try:
            out.append(_ONE.decode(item))
        except msgspec.DecodeError:
            continue
    return out


def job_event(
    kind: EventKind, job: JobRecord, at: float, *, message: str | None = None
) -> JobEvent:
    """The event for a job after a step changed it (the step's kind, the job's new state)."""
    if message is None and kind is EventKind.PROGRESS:
        message = job.progress_message
    return JobEvent(
        kind=kind,
        id=job.id,
        queue=job.queue,
        state=job.state,
        task=job.task,
        owner=job.owner,
        batch=job.batch,
        attempt=job.attempt,
        progress=job.progress,
        message=message,
        worker=job.worker,
        at=at,
    )


def with_attempt(attempts: Iterable[Attempt], attempt: Attempt) -> list[Attempt]:
    """A job's history with one more ended attempt, the oldest dropped past the cap."""
    kept = [*attempts, attempt]
    return kept[-MAX_ATTEMPTS_KEPT:]


__all__ = [
    "EVENT_RETENTION_S",
    "Attempt",
    "AttemptOutcome",
    "decode_events",
    "encode_events",
    "job_event",
    "with_attempt",
]
