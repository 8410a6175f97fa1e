"""The management API's operations, each written once as a store conversation (ops.py).

Owner scoping is here, not in the surfaces: an operation given ``owner`` sees only
that owner's jobs, and another owner's job id is "not found", never "forbidden".
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence

import msgspec

from offload.admin.filters import (
    checked_name,
    decode_cursor,
    encode_cursor,
    is_everything,
    page_limit,
)
from offload.backends.base import (
    BatchQueryParams,
    CountParams,
    IdsParams,
    JobFilter,
    MarkNamesParams,
    Page,
    QueryParams,
    QueueStats,
)
from offload.batches import BatchStatus
from offload.errors import BatchNotFound, CountChanged, InvalidQuery, JobNotFound
from offload.ops import Op
from offload.pausing import paused_queues
from offload.records import BatchRecord, JobRecord, WorkerInfo
from offload.scheduler import Schedule
from offload.states import CANCELLABLE_STATES, RETRYABLE_STATES, JobState

#: Ids acted on per store call in a bulk action: one call stays short for the store.
BULK_STEP = 500


class Action(enum.StrEnum):
    CANCEL = "cancel"
    RETRY = "retry"
    DELETE = "delete"


#: The states each action can change; a bulk action counts and touches only these.
ACTION_STATES: dict[Action, frozenset[JobState]] = {
    Action.CANCEL: CANCELLABLE_STATES,
    Action.RETRY: RETRYABLE_STATES,
    Action.DELETE: frozenset(JobState) - {JobState.RUNNING},
}


class JobPage(msgspec.Struct, frozen=True, kw_only=True):
    jobs: list[JobRecord]
    #: Pass back as ``cursor`` for the next page; None on the last page.
    next_cursor: str | None


class QueueInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    counts: dict[str, int]
    paused: bool
    oldest_ready_age_s: float | None
    finished_last_minute: int


class ScheduleInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    task: str
    cron: str
    tz: str
    when: str
    missed: str
    last_due_s: float | None
    next_run_s: float | None


def scoped(f: JobFilter, owner: str | None) -> JobFilter:
    """``f`` within one owner's jobs (an owner given twice must agree)."""
    if owner is None:
        return f
    if f.owner is not None and f.owner != owner:
        raise InvalidQuery("a filter cannot ask for another owner's jobs")
    return msgspec.structs.replace(f, owner=owner)


def get(job_id: str, owner: str | None) -> Op[JobRecord]:
    checked_name("job id", job_id)
    if owner is not None:
        checked_name("owner", owner)
    found: list[JobRecord] = yield ("get", IdsParams(ids=[job_id]))
    if not found or (owner is not None and found[0].owner != owner):
        raise JobNotFound(job_id)
    return found[0]


def list_jobs(
    f: JobFilter, cursor: str | None, limit: int, oldest_first: bool = False
) -> Op[JobPage]:
    params = QueryParams(filter=f, cursor=decode_cursor(cursor), limit=page_limit(limit),
                         oldest_first=bool(oldest_first))  # fmt: skip
    page: Page = yield ("query", params)
    next_cursor = None if page.next_cursor is None else encode_cursor(page.next_cursor)
    return JobPage(jobs=page.jobs, next_cursor=next_cursor)


def _for_action(f: JobFilter, action: Action | None) -> JobFilter | None:
    """``f`` narrowed to the states ``action`` can change; None if it leaves none."""
    if action is None:
        return f
    allowed = ACTION_STATES[action]
    chosen = [s for s in (f.states or JobState) if s in allowed]
    if not chosen:
        return None
    return msgspec.structs.replace(f, states=sorted(chosen))


def count(f: JobFilter, action: Action | None) -> Op[int]:
    target = _for_action(f, action)
    if target is None:
        return 0
    found: int = yield ("count", CountParams(filter=target))
    return found


def act_on_one(action: Action, job_id: str, owner: str | None) -> Op[JobRecord | None]:
    """Act on one job: the job as it is now (None once deleted)."""
    job = yield from get(job_id, owner)
    if action is Action.DELETE:
        if job.state is JobState.RUNNING:
            raise InvalidQuery(f"job {job_id} is running: cancel it first, then delete it")
        yield ("delete", IdsParams(ids=[job_id]))
        return None
    changed: list[JobRecord] = yield (action.value, IdsParams(ids=[job_id]))
    return changed[0] if changed else job


def act_on_matching(action: Action, f: JobFilter, expected: int, everything: bool) -> Op[int]:
    """Act on every job ``f`` matches, refusing if it now matches more than ``expected``;
    returns how many jobs the action changed (never more than were counted)."""
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
        raise InvalidQuery("expected must be the count you saw: a whole number >= 0")
    if is_everything(f) and not everything:
        raise InvalidQuery(
            f"this filter matches every job: to {action.value} them all, say so (everything=True)"
        )
    target = _for_action(f, action)
    if target is None:
        return 0
    # Only jobs stored before the count are the caller's: a job stored meanwhile could
    # otherwise take a counted job's place (pages run newest first).
    now_s: float = yield ("now", None)
    cutoff_s = math.nextafter(now_s, math.inf)  # up to now, now included (a frozen clock)
    if target.created_before is None or target.created_before > cutoff_s:
        target = msgspec.structs.replace(target, created_before=cutoff_s)
    found: int = yield ("count", CountParams(filter=target))
    if found > expected:
        raise CountChanged(expected, found)
    touched = 0
    budget = found  # never more than were counted
    cursor: str | None = None
    while budget > 0:
        page: Page = yield ("query", QueryParams(filter=target, cursor=cursor, limit=BULK_STEP))
        ids = [j.id for j in page.jobs][:budget]
        if ids:
            budget -= len(ids)
            touched += yield from _apply(action, ids)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return touched


def _apply(action: Action, ids: Sequence[str]) -> Op[int]:
    if action is Action.DELETE:
        gone: list[str] = yield ("delete", IdsParams(ids=ids))
        return len(gone)
    after: list[JobRecord] = yield (action.value, IdsParams(ids=ids))
    target = JobState.CANCELLED if action is Action.CANCEL else JobState.QUEUED
    return sum(1 for job in after if job.state is target)


def queues(known: Iterable[str]) -> Op[list[QueueInfo]]:
    """Every queue with jobs or known to the app, its counts and whether it is paused."""
    rows: list[QueueStats] = yield ("stats", None)
    by_name = {r.queue: r for r in rows}
    names = sorted(set(by_name) | set(known))
    paused = yield from paused_queues(names)
    out = []
    for name in names:
        row = by_name.get(name)
        out.append(
            QueueInfo(
                name=name,
                counts=row.counts if row else {s.value: 0 for s in JobState},
                paused=name in paused,
                oldest_ready_age_s=row.oldest_ready_age_s if row else None,
                finished_last_minute=row.finished_last_minute if row else 0,
            )
        )
    return out


def workers() -> Op[list[WorkerInfo]]:
    found: list[WorkerInfo] = yield ("workers", None)
    return found


def schedules(entries: Sequence[Schedule]) -> Op[list[ScheduleInfo]]:
    if not entries:
        return []
    marks: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[s.mark for s in entries]))
    now_s: float = yield ("now", None)
    out = []
    for entry in entries:
        last = marks.get(entry.mark)
        last_s = _float_or_none(last)
        out.append(
            ScheduleInfo(
                name=entry.name,
                task=entry.task.name,
                cron=entry.cron,
                tz=entry.tz,
                when=entry.describe(),
                missed=entry.missed.value,
                last_due_s=last_s,
                next_run_s=entry.next_due(max(now_s, last_s or now_s)),
            )
        )
    return out


def _float_or_none(raw: str | None) -> float | None:
    try:
        return None if raw is None else float(raw)
    except ValueError:
        return None


def batch(batch_id: str, owner: str | None) -> Op[BatchStatus]:
    """A batch's members counted by state (one indexed count each, no member read)."""
    checked_name("batch id", batch_id)
    records: list[BatchRecord] = yield ("batches", BatchQueryParams(ids=[batch_id]))
    counts: dict[str, int] = {}
    for state in JobState:
        members = scoped(JobFilter(batch=batch_id, states=[state]), owner)
        found: int = yield ("count", CountParams(filter=members))
        if found:
            counts[state.value] = found
    total = sum(counts.values())  # members move on between the counts: a rough total
    if total == 0 and (not records or owner is not None):
        raise BatchNotFound(batch_id)
    if records and owner is not None:  # the store's own count, if every member is theirs
        theirs: int = yield ("count", CountParams(filter=scoped(JobFilter(batch=batch_id), owner)))
        if theirs != records[0].total:
            records = []
    if not records:  # an owner sees its own members only
        return BatchStatus(id=batch_id, total=total, counts=counts)
    record = records[0]
    return BatchStatus(
        id=batch_id, total=record.total, counts=counts, remaining=record.remaining,
        completed_at=record.completed_at,
    )  # fmt: skip


def open_batches() -> Op[list[str]]:
    """Batches whose last member has not ended, newest first."""
    records: list[BatchRecord] = yield ("batches", BatchQueryParams(open_only=True, limit=1000))
    return [r.id for r in records]
