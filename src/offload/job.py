"""``Job``: a handle on one stored job, from ``enqueue`` or ``app.job(id)``."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import msgspec

from offload.backends.base import IdsParams
from offload.errors import JobCancelled, JobFailed, JobNotFound
from offload.records import JobRecord
from offload.states import JobState

if TYPE_CHECKING:
    from offload.app import Offload

R = TypeVar("R")

_POLL_START_S = 0.005
_POLL_MAX_S = 0.25


class Progress(NamedTuple):
    fraction: float
    message: str | None


class Job(Generic[R]):
    """``state`` and ``progress`` read the store afresh; ``record`` is the last snapshot."""

    def __init__(self, app: Offload, record: JobRecord) -> None:
        self.app = app
        self.record = record

    @property
    def id(self) -> str:
        return self.record.id

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.record.task} {self.record.state.value}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def refresh(self) -> Job[R]:
        self.record = self._fetch(self.app.backend.blocking.get(IdsParams(ids=[self.id])))
        return self

    async def refresh_async(self) -> Job[R]:
        self.record = self._fetch(await self.app.backend.get(IdsParams(ids=[self.id])))
        return self

    def _fetch(self, found: list[JobRecord]) -> JobRecord:
        if not found:
            raise JobNotFound(self.id)
        return found[0]

    @property
    def state(self) -> JobState:
        return self.refresh().record.state

    @property
    def progress(self) -> Progress:
        record = self.refresh().record
        return Progress(record.progress, record.progress_message)

    def _outcome(self) -> R:
        record = self.record
        if record.state is JobState.SUCCEEDED:
            return self._decode(record.result)
        if record.state is JobState.DEAD:
            raise JobFailed(self.id, record.error)
        raise JobCancelled(self.id)

    def _decode(self, data: bytes | None) -> R:
        if data is None:
            return None  # type: ignore[return-value]
        task = self.app.tasks.get(self.record.task)
        result: Any = (
            task.codec.decode_result(data) if task is not None else msgspec.json.decode(data)
        )
        return result  # type: ignore[no-any-return]

    def result(self, timeout: float | None = None) -> R:
        """Wait for the job to end; return its result or raise ``JobFailed``/``JobCancelled``.

        Raises ``TimeoutError`` if it has not ended within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause_s = _POLL_START_S
        while not self.refresh().record.state.is_terminal:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} is still {self.record.state.value}")
            remaining = pause_s if deadline is None else min(pause_s, deadline - time.monotonic())
            time.sleep(max(remaining, 0))
            pause_s = min(pause_s * 1.5, _POLL_MAX_S)
        return self._outcome()

    async def result_async(self, timeout: float | None = None) -> R:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause_s = _POLL_START_S
        while not (await self.refresh_async()).record.state.is_terminal:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} is still {self.record.state.value}")
            remaining = pause_s if deadline is None else min(pause_s, deadline - time.monotonic())
            await asyncio.sleep(max(remaining, 0))
            pause_s = min(pause_s * 1.5, _POLL_MAX_S)
        return self._outcome()

    def cancel(self) -> bool:
        """Cancel the job if it has not ended; True if it is now cancelled."""
        found = self.app.backend.blocking.cancel(IdsParams(ids=[self.id]))
        self.record = self._fetch(found)
        return self.record.state is JobState.CANCELLED

    async def cancel_async(self) -> bool:
        self.record = self._fetch(await self.app.backend.cancel(IdsParams(ids=[self.id])))
        return self.record.state is JobState.CANCELLED

    def retry(self) -> bool:
        """Queue a dead or cancelled job again; True if it is now queued."""
        self.record = self._fetch(self.app.backend.blocking.retry(IdsParams(ids=[self.id])))
        return self.record.state is JobState.QUEUED
