"""Batches: jobs that belong together, and a callback that runs once after all have ended.

A batch is its members (each carries the batch id) plus a store *mark* that
holds the callback and the member count; a second mark lists the open batches.
The leader's ``BatchService`` looks at each open batch every tick; once every
member has ended it stores the callback under an id derived from the batch's,
so a leader that dies and a new one that repeats the step still make one
callback, and only then closes the batch. Members that end any way at all
(succeeded, dead after retries or crashes, cancelled by a person) count.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from offload.backends.base import (
    Backend,
    EnqueueParams,
    JobFilter,
    MarkNamesParams,
    MarkParams,
    QueryParams,
    SyncBackend,
)
from offload.errors import ConfigurationError
from offload.ids import derived_id, id_time_ms
from offload.records import JobRecord, NewJob
from offload.states import JobState
from offload.task import chain_step, job_from_step

if TYPE_CHECKING:
    from offload.app import Offload
    from offload.task import Signature

OPEN_BATCHES = "batches:open"
_PAGE = 1000


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
    """Record the batch, list it as open, then store its members in one enqueue."""

    if not signatures:
        raise ConfigurationError("a batch needs at least one job")
    batch_id = app.new_id()
    spec = BatchSpec(
        total=len(signatures), callback=None if on_complete is None else chain_step(on_complete)
    )
    _set(app, batch_mark(batch_id), msgspec.json.encode(spec).decode())
    _update_open(app, add=batch_id)
    jobs = [msgspec.structs.replace(s.to_new_job(), batch=batch_id) for s in signatures]
    app.backend.blocking.enqueue(EnqueueParams(jobs=jobs))
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
            if spec_raw is None:
                closed.append(batch_id)
                continue
            spec = msgspec.json.decode(spec_raw, type=BatchSpec)
            ended = [j for j in await members_async(backend, batch_id) if j.state.is_terminal]
            if len(ended) < spec.total:
                continue
            callback = callback_job(batch_id, spec, ended)
            if callback is not None:
                # ValueError: an earlier leader stored it and died before closing the batch
                with contextlib.suppress(ValueError):
                    await backend.enqueue(EnqueueParams(jobs=[callback]))
            closed.append(batch_id)
            self.completed += 1
        if closed:
            await self._close(backend, closed)
        return None if len(closed) == len(open_ids) else 0.0

    async def _close(self, backend: Backend, closed: list[str]) -> None:
        for _ in range(100):
            marks = await backend.get_marks(MarkNamesParams(names=[OPEN_BATCHES]))
            old = marks.get(OPEN_BATCHES)
            ids: list[str] = [] if old is None else msgspec.json.decode(old)
            new = msgspec.json.encode([i for i in ids if i not in closed]).decode()
            if await backend.set_mark(MarkParams(name=OPEN_BATCHES, value=new, expected=old)):
                return
