"""Leader-only upkeep: reap expired leases, promote due jobs, prune old results, and
the leader services (cron) the app adds.

Every worker runs this loop but only the holder of the ``offload.maintenance``
lock does the work, so a hundred workers cost the store one reaper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Protocol, TypeVar

from offload.backends.base import Backend, BackendError, LockParams, PruneParams, ReapParams

log = logging.getLogger("offload.worker")

LOCK_NAME = "offload.maintenance"

_T = TypeVar("_T")


class _Failed:
    """What a step that failed returns (None means "nothing pending" for a service)."""


_FAILED = _Failed()


def _name(service: object) -> str:
    return str(getattr(service, "name", None) or type(service).__name__)


class LeaderService(Protocol):
    """A small unit that only the leader runs, once per maintenance tick."""

    async def tick(self, backend: Backend, now_s: float) -> float | None:
        """Do what is due; return how soon (seconds) the service needs the next tick, or
        None when nothing is pending (an idle leader then ticks less often)."""
        ...


class Maintenance:
    def __init__(
        self,
        backend: Backend,
        *,
        owner: str,
        max_crashes: int,
        retention_s: float,
        counts_retention_s: float | None = None,
        interval_s: float = 1.0,
        idle_interval_s: float | None = None,
        prune_every_s: float = 60.0,
        services: Sequence[LeaderService] = (),
    ) -> None:
        self._backend = backend
        # With nothing to do the leader backs off to idle_interval_s, so an idle cluster
        # costs the store a few round trips every few seconds; the lock outlives 3 pauses.
        self._idle_interval_s = max(interval_s, idle_interval_s or interval_s)
        ttl_s = max(5.0, 5 * interval_s, 3 * self._idle_interval_s)
        self._lock = LockParams(name=LOCK_NAME, owner=owner, ttl_s=ttl_s)
        self._max_crashes = max_crashes
        self._retention_s = retention_s
        self._counts_retention_s = counts_retention_s
        self._interval_s = interval_s
        self._prune_every_s = prune_every_s
        self._next_prune = 0.0
        self._services = list(services)
        self.is_leader = False
        self._store_down = False
        self.reaped = 0
        self._pause_s = interval_s

    async def run_once(self) -> float | None:
        """One round of upkeep; returns how soon it is needed again (None: idle).

        Each step (reap, promote, prune, every leader service) runs on its own: one that
        fails is logged under its name with its real cause, and the others still run."""
        self.is_leader = await self._backend.lock(self._lock)
        self._store_down = False  # it answered
        if not self.is_leader:
            return None
        soon: float | None = None
        if await self._isolated("reap", self._reap):  # work done, or a failure: tick soon
            soon = self._interval_s
        if await self._isolated("promote", self._backend.promote_due):
            soon = self._interval_s
        now = await self._backend.now()
        if now >= self._next_prune:
            self._next_prune = now + self._prune_every_s
            await self._isolated("prune", partial(self._prune, now))
        for service in self._services:
            wanted = await self._isolated(_name(service), partial(service.tick, self._backend, now))
            if isinstance(wanted, _Failed):
                wanted = self._interval_s  # try again at the busy pace, not the idle one
            if wanted is not None:
                soon = wanted if soon is None else min(soon, wanted)
        return soon

    async def _isolated(self, name: str, step: Callable[[], Awaitable[_T]]) -> _T | _Failed:
        """Run one step; log its failure with the step's name and its real cause."""
        try:
            return await step()
        except BackendError as exc:
            self._outage(f"maintenance: {name} skipped, the store did not answer: {exc}")
        except Exception as exc:
            log.exception("maintenance: %s failed (%s: %s); the other steps still run",
                          name, type(exc).__name__, exc)  # fmt: skip
        return _FAILED

    async def _reap(self) -> int:
        reaped = await self._backend.reap_expired(ReapParams(max_crashes=self._max_crashes))
        if reaped:
            self.reaped += len(reaped)
            dead = sum(1 for r in reaped if r.state.value == "dead")
            log.warning(
                "recovered %d job(s) whose worker stopped renewing its lease (%d now dead "
                "after %d crashes)",
                len(reaped), dead, self._max_crashes,
            )  # fmt: skip
        return len(reaped)

    async def _prune(self, now: float) -> None:
        counts_before = None if self._counts_retention_s is None else now - self._counts_retention_s
        pruned = await self._backend.prune(
            PruneParams(finished_before=now - self._retention_s, counts_before=counts_before)
        )
        if pruned:
            log.info("pruned %d finished job(s) older than the retention period", pruned)

    def _next_pause(self, soon: float | None) -> float:
        if not self.is_leader:  # followers only need to notice a dead leader
            return max(self._interval_s, self._idle_interval_s)
        if soon is not None and soon <= self._interval_s:
            self._pause_s = self._interval_s  # busy: keep the short beat
        else:
            self._pause_s = min(self._pause_s * 2, self._idle_interval_s)
        pause_s = self._pause_s if soon is None else min(self._pause_s, soon)
        return max(pause_s, self._interval_s)

    def _outage(self, message: str) -> None:
        """An outage is logged once (the claim loop tells when it ends), not every tick."""
        log.log(logging.DEBUG if self._store_down else logging.ERROR, message)
        self._store_down = True

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            soon: float | None = self._interval_s
            try:
                soon = await self.run_once()
            except BackendError as exc:
                self._outage(f"maintenance skipped: {exc}; retrying until the store is back")
            except Exception:
                log.exception("maintenance failed; retrying")
            pause_s = self._next_pause(soon)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause_s):
                    await stopping.wait()

    async def resign(self) -> None:
        if self.is_leader:
            await self._backend.unlock(self._lock)
            self.is_leader = False
