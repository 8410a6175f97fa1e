"""Batches: jobs that belong together, and a callback that runs once after all have ended.

The members and the batch are stored in one enqueue step (``EnqueueParams.batch``):
the store counts the members down as they end, whatever ends them (their worker, the
reaper, a person's cancel or delete), and stores the callback in the step that ends
the last one, exactly once. Nothing scans members while a batch runs. The callback is
stored with its own arguments; when it runs, a before-run hook reads the members'
outcomes once and puts them first.

A member may not carry a unique key: a job already holding the key would be
returned in its place, outside the batch, and the batch could not count it down.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from offload.backends.base import (
    Backend,
    EnqueueParams,
    JobFilter,
    QueryParams,
    SyncBackend,
)
from offload.errors import ConfigurationError
from offload.ids import derived_id, id_time_ms
from offload.job import Job
from offload.records import BatchOpen, JobRecord, NewJob
from offload.states import JobState

if TYPE_CHECKING:
    from offload.app import Offload
    from offload.hooks import Hooks
    from offload.task import Signature

log = logging.getLogger("offload.batches")

#: A callback job carries its batch's id here: it runs with the members' outcomes first.
CALLBACK_META_KEY = "batch_callback"
_PAGE = 1000


class MemberOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What the callback receives for each member, in the order the members were given."""

    id: str
    state: str
    result: Any = None
    error: str | None = None


@dataclass(frozen=True)
class BatchStatus:
    """A batch's members by state; ``remaining`` and ``completed_at`` are the store's own
    count (a member deleted before it ended no longer counts, but is never waited for)."""

    id: str
    total: int
    counts: dict[str, int]
    remaining: int | None = None
    completed_at: float | None = None

    @property
    def done(self) -> int:
        if self.remaining is not None:
            return self.total - self.remaining
        return sum(self.counts.get(s.value, 0) for s in JobState if s.is_terminal)

    @property
    def finished(self) -> bool:
        return self.completed_at is not None or self.done >= self.total


def members(backend: SyncBackend, batch_id: str) -> list[JobRecord]:
    found: list[JobRecord] = []
    cursor: str | None = None
    while True:
        page = backend.query(
            QueryParams(filter=JobFilter(batch=batch_id), cursor=cursor, limit=_PAGE)
        )
        found += page.jobs
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def members_async(backend: Backend, batch_id: str) -> list[JobRecord]:
    found: list[JobRecord] = []
    cursor: str | None = None
    while True:
        page = await backend.query(
            QueryParams(filter=JobFilter(batch=batch_id), cursor=cursor, limit=_PAGE)
        )
        found += page.jobs
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


#: The callback of a batch that asked for notices but gave no callback of its own.
BATCH_DONE_TASK = "offload.batch_done"


def register_tasks(app: Offload) -> None:
    def batch_done(outcomes: list[dict[str, Any]]) -> dict[str, int]:
        """The members' states, counted (the notices that follow say the rest)."""
        counts: dict[str, int] = {}
        for outcome in outcomes:
            state = str(outcome.get("state"))
            counts[state] = counts.get(state, 0) + 1
        return counts

    app.task(name=BATCH_DONE_TASK, retries=3)(batch_done)


def batch_enqueue(
    app: Offload,
    signatures: list[Signature[Any]],
    on_complete: Signature[Any] | None,
    notify: Sequence[Any] = (),
) -> tuple[str, EnqueueParams]:
    """The one store step that stores the members and opens their batch; notices follow
    the callback (an internal one when none is given), so there is one per batch."""
    if not signatures:
        raise ConfigurationError("a batch needs at least one job")
    keyed = [s.task.name for s in signatures if s.call.key is not None]
    if keyed:
        raise ConfigurationError(
            f"a batch member cannot carry a unique key (task {keyed[0]!r}): a job already "
            "holding the key would stand in for it outside the batch; enqueue keyed jobs "
            "on their own"
        )
    batch_id = app.new_id()
    if notify:
        if isinstance(notify, str) or not isinstance(notify, Sequence):
            raise ConfigurationError("notify takes a list, e.g. notify=[Email(to=...)]")
        if on_complete is None:
            on_complete = app.tasks[BATCH_DONE_TASK].s()
        ends = [n.as_follow_up(app, i, batch=batch_id) for i, n in enumerate(notify)]
        kept = tuple(e for e in on_complete.call.on_end if not e[0].startswith("notify:"))
        on_complete = dataclasses.replace(
            on_complete, call=dataclasses.replace(on_complete.call, on_end=(*kept, *ends))
        )
    jobs = [msgspec.structs.replace(s.to_new_job(), batch=batch_id) for s in signatures]
    callback = None if on_complete is None else callback_job(batch_id, on_complete)
    return batch_id, EnqueueParams(jobs=jobs, batch=BatchOpen(id=batch_id, callback=callback))


def callback_id(batch_id: str) -> str:
    """A batch's callback's id, derived from the batch's (stored once, whoever stores it)."""
    return derived_id(id_time_ms(batch_id), f"{batch_id}\0callback")


def callback_job(batch_id: str, on_complete: Signature[Any]) -> NewJob:
    """The callback as stored, under an id derived from the batch's: its own arguments and
    options, checked now, with an empty list where the members' outcomes will go."""
    job_id = callback_id(batch_id)
    task, call = on_complete.task, on_complete.call
    new = task.new_job(([], *on_complete.args), on_complete.kwargs, call, job_id=job_id)
    return msgspec.structs.replace(new, meta={**new.meta, CALLBACK_META_KEY: batch_id})


def outcome_of(job: JobRecord) -> MemberOutcome:
    try:
        result = None if job.result is None else msgspec.json.decode(job.result)
    except msgspec.DecodeError:
        result = None
    return MemberOutcome(
        id=job.id,
        state=job.state.value,
        result=result,
        error=None if job.error is None else f"{job.error.type}: {job.error.message}",
    )


async def with_member_outcomes(app: Offload, job: JobRecord) -> JobRecord:
    """Before-run hook: a batch's callback gets its members' outcomes as first argument
    (in the place its stored payload keeps for them).

    A payload that is not the ``[args, kwargs]`` a callback is stored with is left as it
    is: decoding it fails the job with the reason, as for any unreadable payload."""
    batch_id = job.meta.get(CALLBACK_META_KEY)
    if not isinstance(batch_id, str):
        return job
    try:
        args, kwargs = msgspec.json.decode(job.payload, type=tuple[list[Any], dict[str, Any]])
    except msgspec.DecodeError:
        return job
    if not args:
        return job
    members = sorted(await members_async(app.backend, batch_id), key=lambda j: j.id)
    outcomes = [msgspec.to_builtins(outcome_of(j)) for j in members]
    payload = msgspec.json.encode(([outcomes, *args[1:]], kwargs))
    return msgspec.structs.replace(job, payload=payload)


def register(hooks: Hooks) -> None:
    hooks.before_run.append(with_member_outcomes)


class Batch:
    """A handle on a batch: its members' progress, read from the store."""

    def __init__(self, app: Offload, batch_id: str) -> None:
        self.app = app
        self.id = batch_id

    def __repr__(self) -> str:
        return f"<Batch {self.id}>"

    @property
    def callback_id(self) -> str:
        """The id its ``on_complete`` job has (or will have once every member has ended),
        so a page can show the batch's result before it exists."""
        return callback_id(self.id)

    def status(self) -> BatchStatus:
        """Members by state (a count per state, no member read)."""
        return self.app.admin.batch(self.id)

    def jobs(self) -> list[Job[Any]]:
        found = members(self.app.backend.blocking, self.id)
        return [Job(self.app, r) for r in sorted(found, key=lambda r: r.id)]
