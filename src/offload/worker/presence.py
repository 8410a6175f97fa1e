"""Presence: the worker's entry in the store's registry of live workers.

It beats with its heartbeats (a third of a lease), lists the jobs it runs, and lives
one lease: a worker that vanished without a word drops out of the registry within its
lease, the same time after which its jobs return to their queues.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from offload.backends.base import BackendError, IdsParams, WorkerBeatParams
from offload.records import WorkerInfo
from offload.worker.state import WorkerState

log = logging.getLogger("offload.worker")
#: How soon a change in the jobs a worker runs shows in the registry.
REFRESH_S = 1.0


class Presence(WorkerState):
    async def _presence_loop(self) -> None:
        """Beat again within a second when the jobs this worker runs changed, so the
        registry a person looks at is not a third of a lease behind (a quiet worker
        costs nothing: the heartbeat keeps its entry alive)."""
        while True:
            await asyncio.sleep(REFRESH_S)
            if sorted(self._running) != self._beat_running:
                try:
                    await self._beat_presence()
                except Exception:  # the registry is for people: never the end of the worker
                    log.exception("updating the worker registry failed")

    def _presence(self) -> WorkerInfo:
        return WorkerInfo(
            id=self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=list(self.queues),
            concurrency=self.concurrency,
            started_at=self._started_at,
            running=sorted(self._running),
        )

    async def _beat_presence(self) -> None:
        """Refresh the registry entry; an outage is the heartbeat's to report, not this."""
        if self._started_at == 0.0:
            self._started_at = time.time()
        info = self._presence()
        self._beat_running = info.running
        try:
            await self.app.backend.beat_worker(WorkerBeatParams(worker=info, ttl_s=self.lease_s))
        except BackendError as exc:
            log.debug("cannot update the worker registry (%s)", exc)

    async def _leave(self) -> None:
        """Drop out of the registry at once on a graceful stop."""
        try:
            await self.app.backend.remove_worker(IdsParams(ids=[self.name]))
        except BackendError as exc:
            log.debug("cannot leave the worker registry (%s); it expires", exc)
