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
from collections.abc import Callable, Sequence

from offload.backends.base import Backend, BackendError, IdsParams, WorkerBeatParams
from offload.records import WorkerInfo

log = logging.getLogger("offload.worker")
#: How soon a change in the jobs a worker runs shows in the registry.
REFRESH_S = 1.0


class Presence:
    """Owns what the registry was last told; asks the worker only which jobs it runs."""

    def __init__(
        self,
        backend: Backend,
        *,
        name: str,
        queues: Sequence[str],
        concurrency: int,
        lease_s: float,
        running: Callable[[], list[str]],
    ) -> None:
        self._backend = backend
        self._name = name
        self._queues = list(queues)
        self._concurrency = concurrency
        self._lease_s = lease_s
        self._running = running  # the ids of the jobs the worker runs, sorted
        self._started_at = 0.0  # wall clock, set at the first beat
        self._told: list[str] = []  # the running jobs the registry was last told of

    async def loop(self) -> None:
        """Beat again within a second when the jobs this worker runs changed, so the
        registry a person looks at is not a third of a lease behind (a quiet worker
        costs nothing: the heartbeat keeps its entry alive)."""
        while True:
            await asyncio.sleep(REFRESH_S)
            if self._running() != self._told:
                try:
                    await self.beat()
                except Exception:  # the registry is for people: never the end of the worker
                    log.exception("updating the worker registry failed")

    def info(self) -> WorkerInfo:
        return WorkerInfo(
            id=self._name,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=list(self._queues),
            concurrency=self._concurrency,
            started_at=self._started_at,
            running=self._running(),
        )

    async def beat(self) -> None:
        """Refresh the registry entry; an outage is the heartbeat's to report, not this."""
        if self._started_at == 0.0:
            self._started_at = time.time()
        info = self.info()
        self._told = info.running
        try:
            await self._backend.beat_worker(WorkerBeatParams(worker=info, ttl_s=self._lease_s))
        except BackendError as exc:
            log.debug("cannot update the worker registry (%s)", exc)

    async def leave(self) -> None:
        """Drop out of the registry at once on a graceful stop."""
        try:
            await self._backend.remove_worker(IdsParams(ids=[self._name]))
        except BackendError as exc:
            log.debug("cannot leave the worker registry (%s); it expires", exc)
