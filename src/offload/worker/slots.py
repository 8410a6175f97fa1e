"""Slots: how many jobs to claim, which wait for a slot, when held-back jobs fall due, and
stopping a running job the store no longer lets this worker finish."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging

from offload.backends.base import ClaimParams
from offload.records import JobRecord
from offload.worker import outcomes
from offload.worker.state import Running, WorkerState

log = logging.getLogger("offload.worker")

#: By default a worker claims ahead about this much work (the slots' average run times):
#: a job claimed ahead then waits about as long for its slot, and a worker never sits on
#: long jobs that another could run (a job of over 2.5 times this is never claimed ahead).
PREFETCH_WORK_S = 0.02
#: ... and at most this many times its slots (Celery's default prefetch multiplier).
PREFETCH_MAX_PER_SLOT = 4
#: The weight of each new run time in the moving average.
RUN_TIME_WEIGHT = 0.1

#: How long a claim cancelled by a stop may take to end (its hand-back) before the worker
#: goes on without it; the store's close() finishes what is left.
CLAIM_CANCEL_GRACE_S = 2.0


class Slots(WorkerState):
    async def _claim_unless_stopped(self, params: ClaimParams) -> list[JobRecord] | None:
        """Claim; None if a stop came first. A store whose claims may be abandoned midway
        (they hand back what they took) is not waited on: a claim whose reply was lost on
        a silent connection would hold the stop for the connection's timeout."""
        backend = self.app.backend
        if not backend.capabilities.abandonable_claims:
            return await backend.claim(params)
        claiming = asyncio.ensure_future(backend.claim(params))
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({claiming, stopper}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            claiming.cancel()  # the store hands back what it took
            raise
        finally:
            stopper.cancel()
        if not claiming.done():
            claiming.cancel()
            await asyncio.wait({claiming}, timeout=CLAIM_CANCEL_GRACE_S)
            if not claiming.done() or claiming.cancelled():
                claiming.add_done_callback(_consume)
                return None
        return claiming.result()

    def _claim_params(self) -> ClaimParams | None:
        """The claim that fills the free slots and forming micro-batches; None if full.

        A forming micro-batch's room (its members take no slot) is claimed only from queues
        where nothing but forming micro-batched tasks live: any other job such a claim
        brought would sit leased and idle while another worker could run it.
        """
        if self._alone_pending:
            return None  # a suspect job runs alone: claim nothing until it ends
        serving = self.watch.serving()
        if not serving:
            return None  # every queue is paused: a resume wakes the fetch loop
        free = self.concurrency - self._busy()
        room = self._batch_room()
        prefetch = self._prefetch()
        ahead = max(0, prefetch - len(self._waiting))
        want = max(0, free) + ahead
        if self._waiting and want < (prefetch + 1) // 2:
            return None  # jobs still wait here for a slot: claim once half have started
        if want > 0:  # every queue; the room too if every queue is a forming batch's own
            extra = sum(room.values()) if set(room) == set(serving) else 0
            return ClaimParams(
                queues=serving, limit=want + extra, worker=self.name, lease_s=self.lease_s
            )
        if not room:
            return None
        return ClaimParams(
            queues=list(room), limit=sum(room.values()), worker=self.name, lease_s=self.lease_s
        )

    def _prefetch(self) -> int:
        """How many claimed jobs may wait here for a slot.

        Claiming ahead keeps every slot busy while the next claim is on its way, and
        claims in batches: at 8 threads, short jobs were claimed 3 or 4 at a time, and each
        claim cost the store and the worker more than the jobs it brought. Jobs claimed
        ahead hold their leases (heartbeated), not their timeouts. By default as many as
        the slots finish in ``PREFETCH_WORK_S``: a long job claimed ahead would wait while
        another worker idles.
        """
        if self._serves_batches:
            return 0  # micro-batches claim by their own room (see _batch_room)
        if self.prefetch is not None:
            return self.prefetch
        if self._run_s_avg is None:
            return 0  # nothing ran yet: how long jobs take is unknown
        most = PREFETCH_MAX_PER_SLOT * self.concurrency
        if self._run_s_avg * most <= self.concurrency * PREFETCH_WORK_S:
            return most
        return int(self.concurrency * PREFETCH_WORK_S / self._run_s_avg)

    def _hand_back_waiting(self) -> None:
        """Release every job claimed ahead that has not started (charged nothing)."""
        while self._waiting:
            waiting = self._waiting.popleft()
            self._drop(waiting)
            if waiting.stop_reason == "lost":  # cancelled or reaped while it waited
                self.stats.lost += 1
            else:
                self.acks.remember(waiting.job, outcomes.released(waiting.job))

    def _drop(self, running: Running) -> None:
        """Take a job that never started out of the running set (unless replaced)."""
        if self._running.get(running.job.id) is running:
            del self._running[running.job.id]

    def _ran(self, run_s: float) -> None:
        """Count one job's run time into the average the default prefetch follows."""
        avg = self._run_s_avg
        self._run_s_avg = run_s if avg is None else avg + RUN_TIME_WEIGHT * (run_s - avg)

    def _batch_room(self) -> dict[str, int]:
        """Queues of this worker that only forming micro-batched tasks use, with their room."""
        room: dict[str, int] = {}
        for task in self.app.tasks.values():
            queue = task.defaults.queue
            if queue not in self.queues or self.watch.is_paused(queue):
                continue
            forming = self._forming.get(task.name)
            if forming is None or room.get(queue, 0) < 0:
                room[queue] = -1  # another task's jobs could come: no room on this queue
            else:
                room[queue] = room.get(queue, 0) + forming.size - len(forming.members)
        return {queue: spare for queue, spare in room.items() if spare > 0}

    def _busy(self) -> int:
        """Slots in use: running jobs, plus one per micro-batch forming or running."""
        idle = self._batched_jobs + len(self._waiting)
        return len(self._running) - idle + self._batch_calls_count

    def _pop_due_deferred(self) -> bool:
        """Forget deferrals that are due; True if there were any (time to claim them)."""
        now = self.app.now()
        due = False
        while self._deferred_due and self._deferred_due[0] <= now:
            heapq.heappop(self._deferred_due)
            due = True
        return due

    async def _wait_for_slot_or_deferred(self) -> None:
        if self._pop_due_deferred():
            return
        self._slot_freed.clear()
        timeout_s = None
        if self._deferred_due:
            timeout_s = self._deferred_due[0] - self.app.now() + 0.001
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._slot_freed.wait()

    def _fill_slots(self) -> None:
        """Start jobs waiting for a slot (none while a suspect job runs alone)."""
        while (
            self._waiting
            and self._busy() < self.concurrency
            and not self._alone_pending
            and not self._stopping.is_set()
        ):
            waiting = self._waiting.popleft()
            # Dropped here rather than by _forget, which would call this method again for
            # each: a long run of dropped jobs must not nest a call per job.
            if waiting.stop_reason == "lost":  # cancelled or reaped while it waited
                self._drop(waiting)
                self.stats.lost += 1
                continue
            if self.watch.is_paused(waiting.job.queue):  # claimed ahead, then paused
                self._drop(waiting)
                self.acks.remember(waiting.job, outcomes.released(waiting.job))
                continue
            self._launch(waiting)
        self._slot_freed.set()
        self._job_ended.set()

    def _held_jobs(self) -> list[JobRecord]:
        """Every job whose lease this worker holds: running, or ended and not yet acked."""
        return [r.job for r in self._running.values()] + list(self.acks.pending_jobs.values())

    def _lease_lost(self, job_id: str, delivery: int) -> None:
        """The store took back ``delivery`` of the job: stop it, and drop its outcome."""
        self._stop_job(job_id, delivery, "cancelled or taken over")
        self.acks.drop(job_id, delivery)

    def _stop_job(self, job_id: str, delivery: int | None, why: str) -> bool:
        """Stop the running copy of ``job_id`` (of ``delivery`` if given): the store no
        longer lets this worker finish it. Returns whether one was running."""
        running = self._running.get(job_id)
        if running is None or (delivery is not None and running.job.delivery != delivery):
            return False
        running.stop_reason = "lost"  # in a micro-batch: its entry will be dropped
        running.cancelled.set()
        if running.task is not None:
            log.info("job %s was %s; stopping it", job_id, why)
            running.task.cancel()
        return True


def _consume(task: asyncio.Future[list[JobRecord]]) -> None:
    """A claim the worker went on without: its end (a hand-back, an error) is its own."""
    if not task.cancelled():
        task.exception()
