"""Leases: renew every held job's lease, and stop the jobs this worker lost."""

from __future__ import annotations

import asyncio
import logging

from offload.backends.base import BackendError, HeartbeatParams, LeaseRef
from offload.worker.state import WorkerState

log = logging.getLogger("offload.worker")


class Leases(WorkerState):
    async def _heartbeat_loop(self) -> None:
        while True:
            leases = [r.job for r in self._running.values()] + list(self._unacked_jobs.values())
            shortest = min((j.lease_s or self.lease_s for j in leases), default=self.lease_s)
            await asyncio.sleep(shortest / 3)
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        jobs = [r.job for r in self._running.values()] + list(self._unacked_jobs.values())
        if not jobs:
            return
        try:
            result = await self.app.backend.heartbeat(
                HeartbeatParams(
                    leases=[LeaseRef(id=j.id, delivery=j.delivery) for j in jobs],
                    worker=self.name,
                    lease_s=self.lease_s,
                )
            )
        except BackendError as exc:
            log.error("cannot renew leases (%s); will retry", exc)
            return
        for job_id in result.lost:
            running = self._running.get(job_id)
            if running is not None and running.task is not None:
                log.info("job %s was cancelled or taken over; stopping it", job_id)
                running.stop_reason = "lost"
                running.cancelled.set()
                running.task.cancel()
            elif running is not None:  # in a micro-batch: its entry will be dropped
                running.stop_reason = "lost"
            self._unacked.pop(job_id, None)
            self._unacked_jobs.pop(job_id, None)
