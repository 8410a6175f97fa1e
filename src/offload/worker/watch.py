"""Watch: the store's live events reach the worker's running jobs and its claims.

A person's cancel stops a running job within about a second (not at the next
heartbeat, a third of a lease away), and a paused queue leaves this worker's claims
as soon as the event arrives. Events are best effort: a worker that misses one still
learns of a cancel at its next heartbeat (the lease is gone) and of a pause when it
subscribes again, which re-reads every pause mark.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from offload.backends.base import Backend, BackendError, SubscribeParams
from offload.ops import run_async
from offload.pausing import paused_queues
from offload.records import CONTROL_KINDS, EventKind, JobEvent

log = logging.getLogger("offload.worker")

#: Between two subscriptions after a failure, doubling up to the cap.
RESUBSCRIBE_MIN_S = 0.5
RESUBSCRIBE_MAX_S = 10.0
_ENDED = (EventKind.CANCELLED, EventKind.DELETED)
#: All a worker listens for: rare, so a store can send them cheaply even under load.
WORKER_EVENTS = SubscribeParams(kinds=CONTROL_KINDS)
_QUEUE = (EventKind.QUEUE_PAUSED, EventKind.QUEUE_RESUMED)

#: Stop the running copy of a job (of a delivery if given) for a reason; True if one ran.
StopJob = Callable[[str, "int | None", str], bool]


class Watch:
    """Owns which of the worker's queues are paused; tells the worker to stop a job or to
    look at its queues again."""

    def __init__(
        self,
        backend: Backend,
        queues: Sequence[str],
        *,
        stop_job: StopJob,
        queues_changed: Callable[[], None],
        pause: Callable[[float], Awaitable[None]],
    ) -> None:
        self._backend = backend
        self._queues = list(queues)
        self._stop_job = stop_job
        self._queues_changed = queues_changed
        self._pause = pause  # a sleep that a stop ends early
        self._paused: set[str] = set()

    def serving(self) -> list[str]:
        """The worker's queues less the paused ones, in the worker's order."""
        return [q for q in self._queues if q not in self._paused]

    def is_paused(self, queue: str) -> bool:
        return queue in self._paused

    async def load_paused(self) -> None:
        """Read the pause marks now; an outage leaves them to the watch (claims fail too)."""
        try:
            self._set_paused(await run_async(self._backend, paused_queues(self._queues)))
        except BackendError as exc:
            log.debug("cannot read paused queues yet (%s)", exc)

    async def loop(self) -> None:
        pause_s = RESUBSCRIBE_MIN_S
        while True:
            try:
                async with self._backend.subscribe(WORKER_EVENTS) as stream:
                    self._set_paused(await run_async(self._backend, paused_queues(self._queues)))
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
            if event.kind in _ENDED:
                self._stop_job(event.id, None, "cancelled")
            elif event.kind in _QUEUE and event.queue in self._queues:
                queue_changed = True
        if queue_changed:
            self._set_paused(await run_async(self._backend, paused_queues(self._queues)))

    def _set_paused(self, paused: set[str]) -> None:
        if paused != self._paused:
            for queue in sorted(paused - self._paused):
                log.info("queue %s is paused: no new jobs from it", queue)
            for queue in sorted(self._paused - paused):
                log.info("queue %s resumed", queue)
            self._paused = paused
            self._queues_changed()  # an idle fetch loop looks again with the new queues
