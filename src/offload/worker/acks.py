"""Acknowledgements: the outcomes of ended jobs, sent to the store in batches.

An outcome is kept until the store took it (or refused it for a lease this worker no
longer holds): through an outage every outcome waits and is sent again, and one value
the store cannot hold fails only its own job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence

from msgspec.structs import replace as replace_struct

from offload.backends.base import (
    Backend,
    BackendError,
    FinishParams,
    Outcome,
    OutcomeKind,
    ValueRejected,
)
from offload.records import ErrorInfo, JobRecord
from offload.worker import outcomes
from offload.worker.stats import WorkerStats
from offload.worker.tally import Tally

log = logging.getLogger("offload.worker")

#: How long ``finish`` may fail with errors that say neither "outage" nor "this value"
#: (a store gone read-only in a failover, a driver error no store translates) before the
#: worker suspects a value after all and splits the batch to find it. Until then every
#: outcome is kept and sent again, as in an outage: none is dead-lettered for a hiccup.
UNEXPLAINED_GRACE_S = 60.0


class Acks:
    """Owns the outcomes not yet stored; counts each in the worker's stats and tally."""

    def __init__(
        self,
        backend: Backend,
        *,
        now: Callable[[], float],
        stats: WorkerStats,
        tally: Tally,
        not_before: dict[str, float],
        pause: Callable[[float], Awaitable[None]],
        stored: Callable[[], None],
        before: Callable[[Collection[str]], Awaitable[None]] | None = None,
    ) -> None:
        self._backend = backend
        self._now = now
        self._stats = stats
        self._tally = tally
        #: When each deferred job may start (the limits' admission writes it).
        self._not_before = not_before
        self._pause = pause  # a sleep that a stop ends early
        self._stored = stored  # told after each batch stored: a burst worker looks again
        #: Awaited with the ids about to be finished: their last progress goes first, or a
        #: report sent after the finish would be refused and its message lost.
        self._before = before
        self.pending: dict[str, Outcome] = {}
        self.pending_jobs: dict[str, JobRecord] = {}
        #: Batches stored so far: the fetch loop tells a store's answer from its own stalls.
        self.flushes = 0
        self._needed = asyncio.Event()
        self._lock = asyncio.Lock()
        #: When ``finish`` began failing with errors that are neither an outage nor a refused
        #: value (monotonic clock); None while it succeeds.
        self._unexplained_since: float | None = None

    def remember(self, job: JobRecord, outcome: Outcome | None) -> None:
        """An ended attempt's outcome, to store (None: the job was lost, nothing to store)."""
        if outcome is None:
            self._stats.lost += 1
            return
        self._count(outcome)
        self._tally.ended(job, outcome.kind, self._now())
        self.pending[job.id] = outcome
        self.pending_jobs[job.id] = job
        self._needed.set()

    def soon(self) -> None:
        """Store what is pending now, without waiting for another outcome."""
        self._needed.set()

    def drop(self, job_id: str, delivery: int) -> None:
        """The store took ``delivery`` of the job back: its outcome is not to be stored."""
        held = self.pending_jobs.get(job_id)
        if held is not None and held.delivery == delivery:
            self.pending.pop(job_id, None)
            self.pending_jobs.pop(job_id, None)

    def _count(self, outcome: Outcome) -> None:
        kind = outcome.kind.value
        if kind == "succeeded":
            self._stats.succeeded += 1
        elif kind == "retry":
            self._stats.retried += 1
        elif kind == "dead":
            self._stats.dead += 1
        elif kind == "release":
            self._stats.released += 1
        elif kind == "defer":
            self._stats.deferred += 1

    async def loop(self) -> None:
        while True:
            await self._needed.wait()
            self._needed.clear()
            try:
                await self.flush_once()
            except Exception:  # this loop must outlive any surprise: log it, try again
                log.exception("recording outcomes failed (jobs %s); will retry", self._ids())
                await asyncio.sleep(1.0)  # not the stoppable pause: a stopping worker would spin
                self._needed.set()

    def _ids(self, batch: Sequence[Outcome] | None = None, most: int = 20) -> str:
        """Job ids for a log line (the first few)."""
        ids = [o.id for o in batch] if batch is not None else list(self.pending)
        return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")

    async def flush_once(self) -> bool:
        """Send every pending outcome in one ``finish`` call; keep them on failure."""
        async with self._lock:  # the shutdown flush must not resend an in-flight batch
            return await self._flush_locked()

    async def _flush_locked(self) -> bool:
        if not self.pending:
            return True
        batch = list(self.pending.values())
        try:
            if self._before is not None:
                await self._before(self.pending.keys())
            await self._finish(batch)
        except BackendError as exc:
            log.error("cannot record %d outcome(s) (%s); will retry", len(batch), exc)
            await self._pause(0.5)
            self._needed.set()
            return False
        self.flushes += 1
        self._stored()
        return True

    async def _finish(self, batch: list[Outcome]) -> None:
        """Store outcomes in one call. One the store refuses fails only its own job: a refused
        call is split until the refused outcome stands alone, then replaced by a failure."""
        try:
            sent = [self._as_sent(outcome) for outcome in batch]
            result = await self._backend.finish(FinishParams(outcomes=sent))
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
            if self.pending.get(outcome.id) is outcome:
                del self.pending[outcome.id]
                self._not_before.pop(outcome.id, None)
                self.pending_jobs.pop(outcome.id, None)
        if rejected:
            self._stats.rejected += len(rejected)
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
        if self.pending.get(outcome.id) is outcome:
            self.pending[outcome.id] = failure
        try:
            result = await self._backend.finish(FinishParams(outcomes=[failure]))
        except BackendError:
            raise
        except Exception:  # even the failure: give the job up to its lease's expiry
            log.exception(
                "job %s: the store refused its failure too; leaving it to its lease", outcome.id
            )
            self._acknowledged([failure], [])
            return
        self._stats.dead += 1
        self._acknowledged([failure], result.rejected)

    def _as_sent(self, outcome: Outcome) -> Outcome:
        """A deferral waits until its moment, not its delay counted from the flush."""
        not_before = self._not_before.get(outcome.id)
        if outcome.kind is not OutcomeKind.DEFER or not_before is None:
            return outcome
        return replace_struct(outcome, retry_delay_s=max(0.0, not_before - self._now()))

    async def flush_all(self, grace_s: float) -> None:
        """A stopping worker's last sends, for up to ``grace_s`` (at least 5 s)."""
        deadline = time.monotonic() + max(grace_s, 5.0)
        while self.pending and time.monotonic() < deadline:
            try:  # one attempt stuck on a silent store must not outlast the deadline
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    flushed = await self.flush_once()
            except TimeoutError:
                flushed = False
            except Exception:
                log.exception("recording outcomes failed (jobs %s)", self._ids())
                flushed = False
            if not flushed:
                await asyncio.sleep(0.5)
        if self.pending:
            log.error("%d outcome(s) could not be recorded; their jobs will run again",
                      len(self.pending))  # fmt: skip
