"""Batches: jobs that belong together, and a callback that runs once after all have ended.

A batch is its members (each carries the batch id) plus a store *mark* that
holds the callback and the member count; a second mark lists the open batches.
The members are stored first and the batch is opened after, so a call that
fails (bad arguments, an outage) leaves nothing open. The leader's
``BatchService`` asks the store, each tick, only whether an open batch still has
an unfinished member (one indexed row at most); once none has, it reads the
members once, stores the callback under an id derived from the batch's, so a
leader that dies and a new one that repeats the step still make one callback,
and only then closes the batch, whose mark then expires. Members that end any
way at all (succeeded, dead after retries or crashes, cancelled by a person) count.

A member may not carry a unique key: a job already holding the key would be
returned in its place, outside the batch, and the batch could not tell when
its own member ended.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from offload.backends.base import (
    Backend,
    BackendError,
    DuplicateJob,
    EnqueueParams,
    JobFilter,
    MarkNamesParams,
    MarkParams,
    QueryParams,
    SyncBackend,
    ValueRejected,
)
from offload.errors import ConfigurationError
from offload.ids import derived_id, id_time_ms
from offload.job import Job
from offload.records import JobRecord, NewJob
from offload.states import JobState
from offload.task import chain_step, job_from_step

if TYPE_CHECKING:
    from offload.app import Offload
    from offload.task import Signature

log = logging.getLogger("offload.batches")

OPEN_BATCHES = "batches:open"
_PAGE = 1000
#: A closed batch's mark lingers this long (a leader repeating the close finds it), then expires.
CLOSED_MARK_TTL_S = 60.0
_UNFINISHED = tuple(s for s in JobState if not s.is_terminal)


def batch_mark(batch_id: str) -> str:
    return "batch:" + batch_id


class BatchSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the store keeps about a batch until its callback is stored."""

    total: int
    callback: dict[str, Any] | None  # a chain step: task, payload, queue, priority


class MemberOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What the callback receives for each member, in the order the members were given."""

    id: str
    state: str
    result: Any = None
    error: str | None = None


@dataclass(frozen=True)
class BatchStatus:
    id: str
    total: int
    counts: dict[str, int]

    @property
    def done(self) -> int:
        return sum(self.counts.get(s.value, 0) for s in JobState if s.is_terminal)

    @property
    def finished(self) -> bool:
        return self.done >= self.total


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


def start_batch(
    app: Offload, signatures: list[Signature[Any]], on_complete: Signature[Any] | None
) -> str:
    """Store the members in one enqueue, then record the batch and list it as open: a
    failure before the batch is open leaves nothing open (members already stored then
    simply run without a callback)."""

    if not signatures:
        raise ConfigurationError("a batch needs at least one job")
    keyed = [s.task.name for s in signatures if s.call.key is not None]
    if keyed:
        raise ConfigurationError(
            f"a batch member cannot carry a unique key (task {keyed[0]!r}): a job already "
            "holding the key would stand in for it outside the batch; enqueue keyed jobs "
            "on their own"
        )
    callback = None if on_complete is None else chain_step(on_complete)
    batch_id = app.new_id()
    jobs = [msgspec.structs.replace(s.to_new_job(), batch=batch_id) for s in signatures]
    stored = app.backend.blocking.enqueue(EnqueueParams(jobs=jobs))
    spec = BatchSpec(total=sum(1 for r in stored if r.batch == batch_id), callback=callback)
    _set(app, batch_mark(batch_id), msgspec.json.encode(spec).decode())
    _update_open(app, add=batch_id)
    return batch_id


def _set(app: Offload, name: str, value: str) -> None:
    if not app.backend.blocking.set_mark(MarkParams(name=name, value=value)):
        raise ConfigurationError(f"batch mark {name} already exists")


def _update_open(app: Offload, *, add: str | None = None) -> None:
    for _ in range(100):  # compare-and-set: retry when another writer got in first
        current = app.backend.blocking.get_marks(MarkNamesParams(names=[OPEN_BATCHES]))
        old = current.get(OPEN_BATCHES)
        ids: list[str] = [] if old is None else msgspec.json.decode(old)
        if add is not None:
            ids.append(add)
        new = msgspec.json.encode(ids).decode()
        params = MarkParams(name=OPEN_BATCHES, value=new, expected=old)
        if app.backend.blocking.set_mark(params):
            return
    raise ConfigurationError("could not record the batch: the open-batch list kept changing")


def outcome_of(job: JobRecord) -> MemberOutcome:
    return MemberOutcome(
        id=job.id,
        state=job.state.value,
        result=None if job.result is None else msgspec.json.decode(job.result),
        error=None if job.error is None else f"{job.error.type}: {job.error.message}",
    )


def callback_job(batch_id: str, spec: BatchSpec, ended: list[JobRecord]) -> NewJob | None:
    if spec.callback is None:
        return None
    ended = sorted(ended, key=lambda j: j.id)  # the order the members were given
    return job_from_step(
        spec.callback, [msgspec.to_builtins(outcome_of(j)) for j in ended],
        job_id=derived_id(id_time_ms(batch_id), f"{batch_id}\0callback"), owner=None,
        meta={"batch_callback": batch_id},
    )  # fmt: skip


class BatchService:
    """Leader-only: store each finished batch's callback, once, then close the batch."""

    def __init__(self) -> None:
        self.completed = 0

    async def tick(self, backend: Backend, now_s: float) -> float | None:
        """Complete the batches whose members all ended; returns 0 (tick again soon) while
        some batch is still open, None when none is."""
        marks = await backend.get_marks(MarkNamesParams(names=[OPEN_BATCHES]))
        raw = marks.get(OPEN_BATCHES)
        if raw is None:
            return None
        open_ids: list[str] = msgspec.json.decode(raw)
        if not open_ids:
            return None
        specs = await backend.get_marks(MarkNamesParams(names=[batch_mark(i) for i in open_ids]))
        closed: list[str] = []
        for batch_id in open_ids:
            spec_raw = specs.get(batch_mark(batch_id))
            try:
                if spec_raw is None:
                    closed.append(batch_id)
                elif await self._complete(backend, batch_id, spec_raw):
                    closed.append(batch_id)
                    self.completed += 1
            except BackendError:
                raise  # the store is out: the whole tick is retried
            except Exception:  # this batch alone; the others go on
                log.exception("batch %s: completing it failed; trying again next tick", batch_id)
        if closed:
            await self._close(backend, closed, specs)
        return None if len(closed) == len(open_ids) else 0.0

    async def _complete(self, backend: Backend, batch_id: str, spec_raw: str) -> bool:
        """Store the callback once no member is unfinished; True when the batch may close.

        Progress is one indexed question (is any member unfinished? at most one row);
        the members are read once, when the batch completes."""
        unfinished = await backend.query(
            QueryParams(filter=JobFilter(batch=batch_id, states=_UNFINISHED), limit=1)
        )
        if unfinished.jobs:
            return False
        try:
            spec = msgspec.json.decode(spec_raw, type=BatchSpec)
            callback = callback_job(batch_id, spec, await members_async(backend, batch_id))
        except (msgspec.DecodeError, KeyError, TypeError, UnicodeError) as exc:
            log.error("batch %s: its callback cannot be made (%s: %s); the batch is closed "
                      "without it", batch_id, type(exc).__name__, exc)  # fmt: skip
            return True
        if callback is None:
            return True
        try:
            await backend.enqueue(EnqueueParams(jobs=[callback]))
        except DuplicateJob:
            pass  # an earlier leader stored it and died before closing the batch
        except ValueRejected as exc:  # the same call can never succeed: do not retry forever
            log.error("batch %s: the store refused its callback job %s (%s); the batch is "
                      "closed without it", batch_id, callback.id, exc)  # fmt: skip
        return True

    async def _close(self, backend: Backend, closed: list[str], specs: dict[str, str]) -> None:
        """Let each closed batch's mark expire, then take the batches off the open list (a
        leader that dies in between leaves them listed: the next one finds them done)."""
        for batch_id in closed:
            name = batch_mark(batch_id)
            if (raw := specs.get(name)) is not None:
                await backend.set_mark(
                    MarkParams(name=name, value=raw, expected=raw, ttl_s=CLOSED_MARK_TTL_S)
                )
        for _ in range(100):
            marks = await backend.get_marks(MarkNamesParams(names=[OPEN_BATCHES]))
            old = marks.get(OPEN_BATCHES)
            ids: list[str] = [] if old is None else msgspec.json.decode(old)
            new = msgspec.json.encode([i for i in ids if i not in closed]).decode()
            if await backend.set_mark(MarkParams(name=OPEN_BATCHES, value=new, expected=old)):
                return


class Batch:
    """A handle on a batch: its members' progress, read from the store."""

    def __init__(self, app: Offload, batch_id: str) -> None:
        self.app = app
        self.id = batch_id

    def __repr__(self) -> str:
        return f"<Batch {self.id}>"

    def status(self) -> BatchStatus:
        jobs = members(self.app.backend.blocking, self.id)
        counts: dict[str, int] = {}
        for job in jobs:
            counts[job.state.value] = counts.get(job.state.value, 0) + 1
        return BatchStatus(id=self.id, total=len(jobs), counts=counts)

    def jobs(self) -> list[Job[Any]]:
        found = members(self.app.backend.blocking, self.id)
        return [Job(self.app, r) for r in sorted(found, key=lambda r: r.id)]
