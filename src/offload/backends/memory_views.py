"""The in-memory store's pieces that keep no state of their own: views over its jobs,
an outcome applied to one job, and its marks."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import msgspec

from offload.backends.base import (
    JobFilter,
    MarkParams,
    Outcome,
    OutcomeKind,
    Page,
    QueryParams,
    QueueStats,
)
from offload.backends.event_wire import with_attempt
from offload.backends.values import storable_error_info
from offload.records import Attempt, AttemptOutcome, ErrorInfo, EventKind, JobRecord
from offload.states import JobState

_READY = (JobState.QUEUED, JobState.SCHEDULED)


def query_page(jobs: Iterable[JobRecord], params: QueryParams) -> Page:
    """One page of ``params.filter``'s matches, newest first unless ``oldest_first`` (call
    under the store's lock)."""
    up, cursor = params.oldest_first, params.cursor
    matches = [
        j
        for j in jobs
        if matches_filter(j, params.filter)
        and (cursor is None or (j.id > cursor if up else j.id < cursor))
    ]
    matches.sort(key=lambda j: j.id, reverse=not up)
    page = [msgspec.structs.replace(j) for j in matches[: params.limit]]
    more = len(matches) > params.limit
    return Page(jobs=page, next_cursor=page[-1].id if more and page else None)


def matches_filter(j: JobRecord, f: JobFilter) -> bool:
    return (
        (not f.states or j.state in f.states)
        and (f.queue is None or j.queue == f.queue)
        and (f.task is None or j.task == f.task)
        and (f.owner is None or j.owner == f.owner)
        and (f.batch is None or j.batch == f.batch)
        and (f.created_after is None or j.created_at >= f.created_after)
        and (f.created_before is None or j.created_at < f.created_before)
        and (f.text is None or _mentions(j, f.text.casefold(), f.text_skips))
    )


def _mentions(j: JobRecord, text: str, skips: Sequence[str]) -> bool:
    if any(text in (v or "").casefold() for v in (j.id, j.task, j.owner)):
        return True
    return j.task not in skips and text in j.payload.decode("utf-8", "replace").casefold()


def queue_stats(jobs: Iterable[JobRecord], now: float) -> list[QueueStats]:
    per_queue: dict[str, dict[str, int]] = {}
    oldest: dict[str, float] = {}
    recent: dict[str, int] = {}
    for job in jobs:
        counts = per_queue.setdefault(job.queue, {s.value: 0 for s in JobState})
        counts[job.state.value] += 1
        if job.state in _READY and job.run_at <= now:
            oldest[job.queue] = min(oldest.get(job.queue, now), job.run_at)
        if job.finished_at is not None and job.finished_at >= now - 60:
            recent[job.queue] = recent.get(job.queue, 0) + 1
    return [
        QueueStats(
            queue=queue,
            counts=counts,
            oldest_ready_age_s=(now - oldest[queue]) if queue in oldest else None,
            finished_last_minute=recent.get(queue, 0),
        )
        for queue, counts in sorted(per_queue.items())
    ]


def fair_head(jobs: Iterable[JobRecord], queue: str, priority: int, now: float) -> float:
    """The run_at of the job a claim would take first at this priority (now if none)."""
    return min(
        (
            j.run_at
            for j in jobs
            if j.queue == queue and j.priority == priority and j.state in _READY and j.run_at <= now
        ),
        default=now,
    )


def next_ready(jobs: Iterable[JobRecord], queues: Collection[str]) -> float | None:
    """When the earliest job on ``queues`` is due."""
    times = [j.run_at for j in jobs if j.state in _READY and j.queue in queues]
    return min(times) if times else None


#: outcome -> (the attempt's ending, the event subscribers get)
OUTCOME_ENDINGS: dict[OutcomeKind, tuple[AttemptOutcome, EventKind]] = {
    OutcomeKind.SUCCEEDED: (AttemptOutcome.SUCCEEDED, EventKind.SUCCEEDED),
    OutcomeKind.RETRY: (AttemptOutcome.FAILED, EventKind.RETRYING),
    OutcomeKind.DEAD: (AttemptOutcome.FAILED, EventKind.DEAD),
    OutcomeKind.CANCELLED: (AttemptOutcome.CANCELLED, EventKind.CANCELLED),
    OutcomeKind.RELEASE: (AttemptOutcome.RELEASED, EventKind.REQUEUED),
    OutcomeKind.DEFER: (AttemptOutcome.DEFERRED, EventKind.REQUEUED),
}


def end_attempt(
    job: JobRecord, ending: AttemptOutcome, now: float, error: ErrorInfo | None = None
) -> None:
    """Append the attempt that is ending now to the job's history (before the job moves on)."""
    attempt = Attempt(
        number=job.attempt,
        worker=job.worker,
        started_at=job.started_at,
        ended_at=now,
        outcome=ending,
        error=error,
    )
    job.attempts = with_attempt(job.attempts, attempt)


def apply_outcome(job: JobRecord, outcome: Outcome, now: float) -> EventKind:
    """A taken outcome applied to its job (the caller has checked the lease); returns the
    kind of event it makes."""
    job.lease_until = None
    kind = outcome.kind
    ending, event = OUTCOME_ENDINGS[kind]
    if outcome.meta is not None:
        job.meta = dict(outcome.meta)
    error = None if outcome.error is None else storable_error_info(outcome.error)
    end_attempt(job, ending, now, error)
    if kind is OutcomeKind.DEFER:
        job.state = JobState.SCHEDULED
        job.run_at = now + outcome.retry_delay_s
        job.attempt -= 1
        job.worker = None
        return event
    if kind is OutcomeKind.RELEASE:
        job.state = JobState.QUEUED
        job.attempt -= 1
        job.worker = None
        return event
    if kind is OutcomeKind.RETRY:
        job.state = JobState.SCHEDULED
        job.run_at = now + outcome.retry_delay_s
        job.error = error
        return event
    job.state = JobState(kind.value)
    job.finished_at = now
    job.result = outcome.result
    job.error = error
    if kind is OutcomeKind.SUCCEEDED:
        job.progress = 1.0
    return event


class Marks:
    """Named values with compare-and-set; one whose lifetime has ended is gone."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[str, float | None]] = {}  # name -> (value, expires_at)

    def get(self, names: Iterable[str], now: float) -> dict[str, str]:
        found = {}
        for name in names:
            value = self._current(name, now)
            if value is not None:
                found[name] = value
        return found

    def _current(self, name: str, now: float) -> str | None:
        stored = self._values.get(name)
        if stored is None or (stored[1] is not None and stored[1] <= now):
            return None
        return stored[0]

    def set(self, params: MarkParams, now: float) -> bool:
        if self._current(params.name, now) != params.expected:
            return False
        expires_at = None if params.ttl_s is None else now + params.ttl_s
        self._values[params.name] = (params.value, expires_at)
        return True

    def prune(self, now: float) -> None:
        """Forget the marks whose lifetime has ended."""
        for name in [n for n, (_, end) in self._values.items() if end is not None and end <= now]:
            del self._values[name]
