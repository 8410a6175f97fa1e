"""Acknowledgements: outcomes and progress reports, sent to the store in batches."""

from __future__ import annotations

import asyncio
import logging
import time

from msgspec.structs import replace as replace_struct

from offload.backends.base import (
    BackendError,
    FinishParams,
    Outcome,
    OutcomeKind,
    ProgressParams,
    ProgressUpdate,
)
from offload.records import JobRecord
from offload.worker.state import WorkerState

log = logging.getLogger("offload.worker")


class Acks(WorkerState):
    def _remember(self, job: JobRecord, outcome: Outcome | None) -> None:
        if outcome is None:
            self.stats.lost += 1
            return
        self._count(outcome)
        self._unacked[job.id] = outcome
        self._unacked_jobs[job.id] = job
        self._flush_needed.set()

    def _count(self, outcome: Outcome) -> None:
        kind = outcome.kind.value
        if kind == "succeeded":
            self.stats.succeeded += 1
        elif kind == "retry":
            self.stats.retried += 1
        elif kind == "dead":
            self.stats.dead += 1
        elif kind == "release":
            self.stats.released += 1
        elif kind == "defer":
            self.stats.deferred += 1

    def _queue_progress(self, update: ProgressUpdate) -> None:
        self._progress[update.id] = update
        self._progress_needed.set()

    # -- acknowledgements ----------------------------------------------------
    async def _flush_loop(self) -> None:
        while True:
            await self._flush_needed.wait()
            self._flush_needed.clear()
            await self._flush_once()

    async def _flush_once(self) -> bool:
        """Send every pending outcome in one ``finish`` call; keep them on failure."""
        async with self._flush_lock:  # the shutdown flush must not resend an in-flight batch
            return await self._flush_locked()

    async def _flush_locked(self) -> bool:
        if not self._unacked:
            return True
        batch = list(self._unacked.values())
        try:
            sent = [self._as_sent(outcome) for outcome in batch]
            result = await self.app.backend.finish(FinishParams(outcomes=sent))
        except BackendError as exc:
            log.error("cannot record %d outcome(s) (%s); will retry", len(batch), exc)
            await self._pause(0.5)
            self._flush_needed.set()
            return False
        for outcome in batch:
            if self._unacked.get(outcome.id) is outcome:
                del self._unacked[outcome.id]
                self._defer_not_before.pop(outcome.id, None)
                self._unacked_jobs.pop(outcome.id, None)
        self._flushes += 1
        self._slot_freed.set()  # a burst worker re-checks for work once outcomes are stored
        if result.rejected:
            self.stats.rejected += len(result.rejected)
            log.warning(
                "%d outcome(s) refused: this worker no longer held their lease (cancelled or "
                "recovered by another worker)",
                len(result.rejected),
            )
        return True

    def _as_sent(self, outcome: Outcome) -> Outcome:
        """A deferral waits until its moment, not its delay counted from the flush."""
        not_before = self._defer_not_before.get(outcome.id)
        if outcome.kind is not OutcomeKind.DEFER or not_before is None:
            return outcome
        return replace_struct(outcome, retry_delay_s=max(0.0, not_before - self.app.now()))

    async def _flush_all(self) -> None:
        deadline = time.monotonic() + max(self.grace_s, 5.0)
        while self._unacked and time.monotonic() < deadline:
            if not await self._flush_once():
                await asyncio.sleep(0.5)
        await self._flush_progress()
        if self._unacked:
            log.error("%d outcome(s) could not be recorded; their jobs will run again",
                      len(self._unacked))  # fmt: skip

    async def _progress_loop(self) -> None:
        while True:
            await self._progress_needed.wait()
            self._progress_needed.clear()
            await self._flush_progress()
            await asyncio.sleep(0.2)  # coalesce chatty tasks into a few writes a second

    async def _flush_progress(self) -> None:
        if not self._progress:
            return
        updates, self._progress = list(self._progress.values()), {}
        try:
            await self.app.backend.report_progress(ProgressParams(updates=updates))
        except BackendError as exc:
            log.warning("cannot record progress (%s)", exc)
