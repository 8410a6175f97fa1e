"""Leader-only upkeep: reap expired leases, promote due jobs, prune old results, and
the leader services (cron) the app adds.

Every worker runs this loop but only the holder of the ``offload.maintenance``
lock does the work, so a hundred workers cost the store one reaper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from offload.backends.base import Backend, BackendError, LockParams, PruneParams, ReapParams

log = logging.getLogger("offload.worker")

LOCK_NAME = "offload.maintenance"


class LeaderService(Protocol):
    """A small unit that only the leader runs, once per maintenance tick."""

    async def tick(self, backend: Backend, now_s: float) -> None: ...


class Maintenance:
    def __init__(
        self,
        backend: Backend,
        *,
        owner: str,
        max_crashes: int,
        retention_s: float,
        interval_s: float = 1.0,
        prune_every_s: float = 60.0,
        services: Sequence[LeaderService] = (),
    ) -> None:
        self._backend = backend
        self._lock = LockParams(name=LOCK_NAME, owner=owner, ttl_s=max(5.0, 5 * interval_s))
        self._max_crashes = max_crashes
        self._retention_s = retention_s
        self._interval_s = interval_s
        self._prune_every_s = prune_every_s
        self._next_prune = 0.0
        self._services = list(services)
        self.is_leader = False
        self.reaped = 0

    async def run_once(self) -> None:
        self.is_leader = await self._backend.lock(self._lock)
        if not self.is_leader:
            return
        reaped = await self._backend.reap_expired(ReapParams(max_crashes=self._max_crashes))
        if reaped:
            self.reaped += len(reaped)
            dead = sum(1 for r in reaped if r.state.value == "dead")
            log.warning(
                "recovered %d job(s) whose worker stopped renewing its lease (%d now dead "
                "after %d crashes)",
                len(reaped), dead, self._max_crashes,
            )  # fmt: skip
        await self._backend.promote_due()
        now = await self._backend.now()
        if now >= self._next_prune:
            self._next_prune = now + self._prune_every_s
            pruned = await self._backend.prune(PruneParams(finished_before=now - self._retention_s))
            if pruned:
                log.info("pruned %d finished job(s) older than the retention period", pruned)
        for service in self._services:
            await service.tick(self._backend, now)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.run_once()
            except BackendError as exc:
                log.error("maintenance skipped: %s; retrying", exc)
            except Exception:
                log.exception("maintenance failed; retrying")
            # Followers check less often: they only need to notice a dead leader.
            pause_s = self._interval_s if self.is_leader else self._interval_s * 3
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause_s):
                    await stopping.wait()

    async def resign(self) -> None:
        if self.is_leader:
            await self._backend.unlock(self._lock)
            self.is_leader = False
