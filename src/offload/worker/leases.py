"""Leases: renew every held job's lease, and report the jobs this worker lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from offload.backends.base import Backend, BackendError, HeartbeatParams, LeaseRef
from offload.records import JobRecord

log = logging.getLogger("offload.worker")


class Leases:
    """Owns the heartbeat's plan; asks the worker which jobs it holds (running, or ended
    and not yet acknowledged) and tells it which of them the store took back."""

    def __init__(
        self,
        backend: Backend,
        *,
        worker: str,
        lease_s: float,
        held: Callable[[], list[JobRecord]],
        lost: Callable[[str, int], None],
        before_beat: Callable[[], Awaitable[None]],
    ) -> None:
        self._backend = backend
        self._worker = worker
        self._lease_s = lease_s  # the app's default, for jobs that set none
        self._held = held
        self._lost = lost  # (job id, the delivery whose lease is gone)
        self._before_beat = before_beat  # the registry's beat rides on the heartbeat
        self._planned_lease_s = lease_s
        self._changed = asyncio.Event()  # a job with a shorter lease than planned came

    def added(self, job: JobRecord) -> None:
        """A job just claimed: if its lease is shorter than the heartbeat planned for, the
        heartbeat plans again (an idle worker's sleep was set for the default lease)."""
        if (job.lease_s or self._lease_s) < self._planned_lease_s:
            self._changed.set()

    async def loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_beat = loop.time()
        while True:
            self._changed.clear()
            jobs = self._held()
            shortest = min((j.lease_s or self._lease_s for j in jobs), default=self._lease_s)
            self._planned_lease_s = shortest
            wait_s = last_beat + shortest / 3 - loop.time()
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._changed.wait()
                    continue  # a shorter lease arrived: plan again from the last beat
            last_beat = loop.time()
            try:
                await self._before_beat()
                await self.heartbeat()
            except Exception:  # this loop must outlive any surprise: log it, beat again
                ids = ", ".join(j.id for j in self._held()[:20])
                log.exception("renewing leases failed (jobs %s); will retry", ids)

    async def heartbeat(self) -> None:
        jobs = self._held()
        if not jobs:
            return
        try:
            result = await self._backend.heartbeat(
                HeartbeatParams(
                    leases=[LeaseRef(id=j.id, delivery=j.delivery) for j in jobs],
                    worker=self._worker,
                    lease_s=self._lease_s,
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
            if deliveries:
                self._lost(job_id, min(deliveries))
