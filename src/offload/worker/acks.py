"""Acknowledgements: outcomes and progress reports, sent to the store in batches."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from msgspec.structs import replace as replace_struct

from offload.backends.base import (
    BackendError,
    FinishParams,
    Outcome,
    OutcomeKind,
    ProgressParams,
    ProgressUpdate,
    ValueRejected,
)
from offload.records import ErrorInfo, JobRecord
from offload.worker import outcomes
from offload.worker.state import WorkerState

log = logging.getLogger("offload.worker")

#: How long ``finish`` may fail with errors that say neither "outage" nor "this value"
#: (a store gone read-only in a failover, a driver error no store translates) before the
#: worker suspects a value after all and splits the batch to find it. Until then every
#: outcome is kept and sent again, as in an outage: none is dead-lettered for a hiccup.
UNEXPLAINED_GRACE_S = 60.0


class Acks(WorkerState):
    def _held_jobs(self) -> list[JobRecord]:
        """Every job whose lease this worker holds: running, or ended and not yet acked."""
        return [r.job for r in self._running.values()] + list(self._unacked_jobs.values())

    def _lease_lost(self, job_id: str, delivery: int) -> None:
        """The store took back ``delivery`` of the job: stop it, and drop its outcome."""
        self._stop_job(job_id, delivery, "cancelled or taken over")
        unacked = self._unacked_jobs.get(job_id)
        if unacked is not None and unacked.delivery == delivery:
            self._unacked.pop(job_id, None)
            self._unacked_jobs.pop(job_id, None)

    def _remember(self, job: JobRecord, outcome: Outcome | None) -> None:
        if outcome is None:
            self.stats.lost += 1
            return
        self._count(outcome)
        self.tally.ended(job, outcome.kind, self.app.now())
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
            try:
                await self._flush_once()
            except Exception:  # this loop must outlive any surprise: log it, try again
                log.exception("recording outcomes failed (jobs %s); will retry", self._ids())
                await asyncio.sleep(1.0)  # not _pause: a stopping worker would spin
                self._flush_needed.set()

    def _ids(self, outcomes: Sequence[Outcome] | None = None, most: int = 20) -> str:
        """Job ids for a log line (the first few)."""
        ids = [o.id for o in outcomes] if outcomes is not None else list(self._unacked)
        return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")

    async def _flush_once(self) -> bool:
        """Send every pending outcome in one ``finish`` call; keep them on failure."""
        async with self._flush_lock:  # the shutdown flush must not resend an in-flight batch
            return await self._flush_locked()

    async def _flush_locked(self) -> bool:
        if not self._unacked:
            return True
        batch = list(self._unacked.values())
        try:
            await self._finish(batch)
        except BackendError as exc:
            log.error("cannot record %d outcome(s) (%s); will retry", len(batch), exc)
            await self._pause(0.5)
            self._flush_needed.set()
            return False
        self._flushes += 1
        self._slot_freed.set()  # a burst worker re-checks for work once outcomes are stored
        return True

    async def _finish(self, batch: list[Outcome]) -> None:
        """Store outcomes in one call. One the store refuses fails only its own job: a refused
        call is split until the refused outcome stands alone, then replaced by a failure."""
        try:
            sent = [self._as_sent(outcome) for outcome in batch]
            result = await self.app.backend.finish(FinishParams(outcomes=sent))
        except BackendError:
            raise  # an outage: every outcome waits for the store to come back
        except Exception as exc:
            if not isinstance(exc, ValueRejected) and self._still_unexplained(exc):
                raise BackendError(f"{type(exc).__name__}: {exc}") from exc
            if len(batch) > 1:
                half = len(batch) // 2
                await self._finish(batch[:half])
                await self._finish(batch[half:])
            else:
                await self._replace_refused(batch[0], exc)
            return
        self._unexplained_since = None
        self._acknowledged(batch, result.rejected)

    def _still_unexplained(self, exc: Exception) -> bool:
        """True while unexplained failures are young enough to be waited out."""
        now = time.monotonic()
        if self._unexplained_since is None:
            self._unexplained_since = now
            log.error("recording outcomes failed (jobs %s); they are kept and sent again",
                      self._ids(), exc_info=exc)  # fmt: skip
        return now - self._unexplained_since < UNEXPLAINED_GRACE_S

    def _acknowledged(self, batch: Sequence[Outcome], rejected: Sequence[str]) -> None:
        for outcome in batch:
            if self._unacked.get(outcome.id) is outcome:
                del self._unacked[outcome.id]
                self._defer_not_before.pop(outcome.id, None)
                self._unacked_jobs.pop(outcome.id, None)
        if rejected:
            self.stats.rejected += len(rejected)
            log.warning(
                "%d outcome(s) refused: this worker no longer held their lease (cancelled or "
                "recovered by another worker): %s",
                len(rejected),
                ", ".join(rejected[:20]),
            )

    async def _replace_refused(self, outcome: Outcome, refusal: Exception) -> None:
        """Store a failure the store can hold in place of an outcome it refused."""
        reason = outcomes.error_info(refusal, with_traceback=False)
        log.error(
            "job %s: the store refused its %s outcome (%s: %s); it is dead-lettered instead",
            outcome.id, outcome.kind.value, reason.type, reason.message,
        )  # fmt: skip
        error = ErrorInfo(
            type="OutcomeRejected",
            message=f"the job's {outcome.kind.value} outcome could not be stored "
            f"({reason.type}: {reason.message}); look for a value the store cannot hold "
            "(a result, error text, delay or follow-up job)",
            traceback=outcome.error.traceback if outcome.error else None,
        )
        failure = Outcome(
            id=outcome.id,
            delivery=outcome.delivery,
            kind=OutcomeKind.DEAD,
            error=outcomes.storable_error(error),
        )
        if self._unacked.get(outcome.id) is outcome:
            self._unacked[outcome.id] = failure
        try:
            result = await self.app.backend.finish(FinishParams(outcomes=[failure]))
        except BackendError:
            raise
        except Exception:  # even the failure: give the job up to its lease's expiry
            log.exception(
                "job %s: the store refused its failure too; leaving it to its lease", outcome.id
            )
            self._acknowledged([failure], [])
            return
        self.stats.dead += 1
        self._acknowledged([failure], result.rejected)

    def _as_sent(self, outcome: Outcome) -> Outcome:
        """A deferral waits until its moment, not its delay counted from the flush."""
        not_before = self._defer_not_before.get(outcome.id)
        if outcome.kind is not OutcomeKind.DEFER or not_before is None:
            return outcome
        return replace_struct(outcome, retry_delay_s=max(0.0, not_before - self.app.now()))

    async def _flush_all(self) -> None:
        deadline = time.monotonic() + max(self.grace_s, 5.0)
        while self._unacked and time.monotonic() < deadline:
            try:  # one attempt stuck on a silent store must not outlast the deadline
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    flushed = await self._flush_once()
            except TimeoutError:
                flushed = False
            except Exception:
                log.exception("recording outcomes failed (jobs %s)", self._ids())
                flushed = False
            if not flushed:
                await asyncio.sleep(0.5)
        await self._flush_progress()
        if self._unacked:
            log.error("%d outcome(s) could not be recorded; their jobs will run again",
                      len(self._unacked))  # fmt: skip

    async def _progress_loop(self) -> None:
        while True:
            await self._progress_needed.wait()
            self._progress_needed.clear()
            try:
                await self._flush_progress()
            except Exception:  # progress is best effort; the loop must go on
                log.exception("recording progress failed (jobs %s)", ", ".join(self._progress))
            await asyncio.sleep(0.2)  # coalesce chatty tasks into a few writes a second

    async def _flush_progress(self) -> None:
        if not self._progress:
            return
        updates, self._progress = list(self._progress.values()), {}
        try:
            await self.app.backend.report_progress(ProgressParams(updates=updates))
        except BackendError as exc:
            log.warning("cannot record progress (%s)", exc)
        except Exception as exc:  # a report the store refuses: drop only that one
            if len(updates) == 1:
                log.warning("job %s: progress report not recorded (%s)", updates[0].id, exc)
                return
            for update in updates:
                try:
                    await self.app.backend.report_progress(ProgressParams(updates=[update]))
                except Exception as one:
                    log.warning("job %s: progress report not recorded (%s)", update.id, one)
