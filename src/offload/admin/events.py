"""Live events for people: one job's, an owner's, a batch's or a queue's, current state first.

The store pushes every step's events (``Backend.subscribe``); this layer picks the
ones a subscriber asked for, and bridges the gap a live feed always has: it
subscribes first, then reads where things stand and sends that (``current=True``),
then the changes. A change made in between may arrive twice, never not at all.
A lost connection is bridged the same way: subscribe again, read again, go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator

from offload.admin.filters import job_filter
from offload.admin.operations import batch, get
from offload.backends.base import Backend, BackendError, JobFilter, QueryParams
from offload.batches import BatchStatus
from offload.errors import JobNotFound
from offload.ops import run_async
from offload.records import EventKind, JobEvent, JobRecord
from offload.states import JobState

log = logging.getLogger("offload.events")

#: Live jobs sent as the current state of an owner or a queue, newest first, at most.
CURRENT_LIMIT = 1000
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 5.0
_LIVE = (JobState.SCHEDULED, JobState.QUEUED, JobState.RUNNING)
_KIND_OF_STATE = {
    JobState.SCHEDULED: EventKind.ENQUEUED,
    JobState.QUEUED: EventKind.ENQUEUED,
    JobState.RUNNING: EventKind.STARTED,
    JobState.SUCCEEDED: EventKind.SUCCEEDED,
    JobState.DEAD: EventKind.DEAD,
    JobState.CANCELLED: EventKind.CANCELLED,
}


def current_event(job: JobRecord, at: float) -> JobEvent:
    """Where ``job`` stands, as an event (``current=True``)."""
    message = job.progress_message
    if job.state in (JobState.DEAD, JobState.SCHEDULED) and job.error is not None:
        message = job.error.message
    return JobEvent(
        kind=_KIND_OF_STATE[job.state],
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
        current=True,
    )


def batch_event(status: BatchStatus, at: float, *, current: bool = False) -> JobEvent:
    done = status.done
    return JobEvent(
        kind=EventKind.BATCH_PROGRESS,
        batch=status.id,
        progress=done / status.total if status.total else 1.0,
        message=f"{done} of {status.total} done",
        at=at,
        current=current,
    )


class Subscription:
    """The events of one job, owner, batch or queue (all given must match; none: all).

    ``async for event in app.admin.aio.subscribe(job=job_id): ...``. A job that does
    not exist (or is another owner's, given ``owner``) raises ``JobNotFound`` first.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        job: str | None = None,
        owner: str | None = None,
        batch: str | None = None,
        queue: str | None = None,
        reconnect: bool = True,
    ) -> None:
        job_filter(owner=owner, batch=batch, queue=queue)  # the same checks as any filter
        self._backend = backend
        self.job = job
        self.owner = owner
        self.batch = batch
        self.queue = queue
        self._reconnect = reconnect
        self._stream: AsyncGenerator[JobEvent, None] | None = None
        #: Set once the store's stream is open: no change after this is missed. A page
        #: drawn before it reads again then, to close the gap between drawing and listening.
        self.listening = asyncio.Event()

    def __aiter__(self) -> AsyncIterator[JobEvent]:
        if self._stream is None:
            self._stream = self._events()
        return self._stream

    async def __aenter__(self) -> AsyncIterator[JobEvent]:
        """``async with ... as events``: the store's subscription ends with the block, even
        when the consumer stops early (a browser that went away)."""
        return aiter(self)

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
            self._stream = None

    def wants(self, event: JobEvent) -> bool:
        if event.kind is EventKind.BATCH_PROGRESS:
            # it names no owner: a batch named here was checked to be the owner's when the
            # subscription read its current state; an owner is not told of other batches
            if self.job is not None or self.queue is not None:
                return False
            if self.batch is not None:
                return event.batch == self.batch
            return self.owner is None
        return (
            (self.job is None or event.id == self.job)
            and (self.owner is None or event.owner == self.owner)
            and (self.batch is None or event.batch == self.batch)
            and (self.queue is None or event.queue == self.queue)
        )

    async def _events(self) -> AsyncGenerator[JobEvent, None]:
        pause_s = RECONNECT_MIN_S
        while True:
            try:
                async with self._backend.subscribe() as stream:
                    self.listening.set()
                    for event in await self._current():
                        yield event
                    pause_s = RECONNECT_MIN_S
                    async for step in stream:
                        for event in step:  # the store pushes batch_progress itself
                            if self.wants(event):
                                yield event
            except BackendError as exc:
                if not self._reconnect:
                    raise
                log.info("live events interrupted (%s); subscribing again", exc)
            await asyncio.sleep(pause_s)
            pause_s = min(RECONNECT_MAX_S, pause_s * 2)

    async def _current(self) -> list[JobEvent]:
        backend = self._backend
        now_s = await backend.now()
        if self.job is not None:
            job = await run_async(backend, get(self.job, self.owner))
            if not self.wants(current_event(job, now_s)):
                raise JobNotFound(self.job)
            return [current_event(job, now_s)]
        if self.owner is None and self.batch is None and self.queue is None:
            return []  # everything: the current state of every job is not a message
        states = () if self.batch is not None else _LIVE
        flt = JobFilter(states=states, owner=self.owner, batch=self.batch, queue=self.queue)
        page = await backend.query(QueryParams(filter=flt, limit=CURRENT_LIMIT))
        events = [current_event(j, now_s) for j in reversed(page.jobs)]
        if self.batch is not None:
            events.append(batch_event(await self._batch_status(), now_s, current=True))
        return events

    async def _batch_status(self) -> BatchStatus:
        assert self.batch is not None
        return await run_async(self._backend, batch(self.batch, self.owner))
