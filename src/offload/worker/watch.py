"""Watch: the store's live events reach the worker's running jobs and its claims.

A person's cancel stops a running job within about a second (not at the next
heartbeat, a third of a lease away), and a paused queue leaves this worker's claims
as soon as the event arrives. Events are best effort: a worker that misses one still
learns of a cancel at its next heartbeat (the lease is gone) and of a pause when it
subscribes again, which re-reads every pause mark.
"""

from __future__ import annotations

import logging

from offload.backends.base import BackendError, SubscribeParams
from offload.ops import run_async
from offload.pausing import paused_queues
from offload.records import CONTROL_KINDS, EventKind, JobEvent
from offload.worker.state import WorkerState

log = logging.getLogger("offload.worker")

#: Between two subscriptions after a failure, doubling up to the cap.
RESUBSCRIBE_MIN_S = 0.5
RESUBSCRIBE_MAX_S = 10.0
_ENDED = (EventKind.CANCELLED, EventKind.DELETED)
#: All a worker listens for: rare, so a store can send them cheaply even under load.
WORKER_EVENTS = SubscribeParams(kinds=CONTROL_KINDS)
_QUEUE = (EventKind.QUEUE_PAUSED, EventKind.QUEUE_RESUMED)


class Watch(WorkerState):
    def _serving(self) -> list[str]:
        """The worker's queues less the paused ones, in the worker's order."""
        return [q for q in self.queues if q not in self._paused]

    async def _load_paused(self) -> None:
        """Read the pause marks now; an outage leaves them to the watch (claims fail too)."""
        try:
            self._set_paused(await run_async(self.app.backend, paused_queues(self.queues)))
        except BackendError as exc:
            log.debug("cannot read paused queues yet (%s)", exc)

    async def _watch_loop(self) -> None:
        pause_s = RESUBSCRIBE_MIN_S
        while True:
            try:
                async with self.app.backend.subscribe(WORKER_EVENTS) as stream:
                    self._set_paused(await run_async(self.app.backend, paused_queues(self.queues)))
                    pause_s = RESUBSCRIBE_MIN_S
                    async for events in stream:
                        await self._on_events(events)
            except BackendError as exc:
                log.debug("live events interrupted (%s); subscribing again", exc)
            except Exception:  # never the end of the worker: it still has its heartbeats
                log.exception("live events failed; subscribing again")
            await self._pause(pause_s)
            pause_s = min(RESUBSCRIBE_MAX_S, pause_s * 2)

    async def _on_events(self, events: list[JobEvent]) -> None:
        queue_changed = False
        for event in events:
            if event.kind in _ENDED and event.id in self._running:
                self._stop_job(event.id, None, "cancelled")
            elif event.kind in _QUEUE and event.queue in self.queues:
                queue_changed = True
        if queue_changed:
            self._set_paused(await run_async(self.app.backend, paused_queues(self.queues)))

    def _set_paused(self, paused: set[str]) -> None:
        if paused != self._paused:
            for queue in sorted(paused - self._paused):
                log.info("queue %s is paused: no new jobs from it", queue)
            for queue in sorted(self._paused - paused):
                log.info("queue %s resumed", queue)
            self._paused = paused
            self._slot_freed.set()  # an idle fetch loop looks again with the new queues
            self._work_maybe.set()

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
