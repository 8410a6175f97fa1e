"""Leases: renew every held job's lease, and stop the jobs this worker lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from offload.backends.base import BackendError, HeartbeatParams, LeaseRef
from offload.records import JobRecord
from offload.worker.state import WorkerState

log = logging.getLogger("offload.worker")


class Leases(WorkerState):
    def _lease_added(self, job: JobRecord) -> None:
        """A job just claimed: if its lease is shorter than the heartbeat planned for, the
        heartbeat plans again (an idle worker's sleep was set for the default lease)."""
        if (job.lease_s or self.lease_s) < self._planned_lease_s:
            self._leases_changed.set()

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_beat = loop.time()
        while True:
            self._leases_changed.clear()
            jobs = self._held_jobs()
            shortest = min((j.lease_s or self.lease_s for j in jobs), default=self.lease_s)
            self._planned_lease_s = shortest
            wait_s = last_beat + shortest / 3 - loop.time()
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._leases_changed.wait()
                    continue  # a shorter lease arrived: plan again from the last beat
            last_beat = loop.time()
            try:
                await self.presence.beat()
                await self._heartbeat()
            except Exception:  # this loop must outlive any surprise: log it, beat again
                ids = ", ".join(j.id for j in self._held_jobs()[:20])
                log.exception("renewing leases failed (jobs %s); will retry", ids)

    def _held_jobs(self) -> list[JobRecord]:
        return [r.job for r in self._running.values()] + list(self._unacked_jobs.values())

    async def _heartbeat(self) -> None:
        jobs = self._held_jobs()
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
        sent: dict[str, list[int]] = {}
        for job in jobs:
            sent.setdefault(job.id, []).append(job.delivery)
        for job_id in result.lost:
            # "Lost" names an id, not a delivery: it is about the lease sent. Sent twice (an
            # unacked outcome and a newer claim of the same id), only the older is surely lost.
            deliveries = sent.get(job_id, [])
            lost = min(deliveries) if deliveries else None
            if lost is not None:
                self._stop_job(job_id, lost, "cancelled or taken over")
            unacked = self._unacked_jobs.get(job_id)
            if unacked is not None and unacked.delivery == lost:
                self._unacked.pop(job_id, None)
                self._unacked_jobs.pop(job_id, None)
