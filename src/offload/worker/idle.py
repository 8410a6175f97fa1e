"""Idle: how the fetch loop waits for work without ever sleeping past a stop, a resumed
queue, a held-back job falling due, or a store gone silent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from offload.backends.base import ClaimParams, WaitParams
from offload.records import JobRecord
from offload.worker import outcomes
from offload.worker.state import WorkerState
from offload.worker.tally import FLUSH_INTERVAL_S as TALLY_INTERVAL_S

log = logging.getLogger("offload.worker")
#: How long a cancelled store call may take to end before the worker goes on without it.
CANCEL_GRACE_S = 2.0


class Idle(WorkerState):
    async def _tally_loop(self) -> None:
        while True:
            await asyncio.sleep(TALLY_INTERVAL_S)
            try:
                await self.tally.flush(self.app.backend, self.app.now())
            except Exception:  # counts are for charts: never the end of the worker
                log.exception("writing per-minute counts failed")

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _wait_for_work(self) -> tuple[ClaimParams, list[JobRecord]] | None:
        """Sleep until the store has work. A store that claims on waking (see WaitParams)
        hands back the jobs it took, with the claim they answer; otherwise None."""
        timeout_s = self.idle_check_s
        if self._pop_due_deferred():
            return None  # a held-back job is due: claim it rather than sleep
        if self._deferred_due:  # a job a limit held back falls due: be there to start it
            timeout_s = min(timeout_s, self._deferred_due[0] - self.app.now() + 0.001)
        claim = None if self.burst else self._claim_params()
        serving = self.watch.serving() or self.queues
        waiter = asyncio.create_task(
            self.app.backend.wait(WaitParams(queues=serving, timeout_s=timeout_s, claim=claim))
        )
        self._work_maybe.clear()
        stopper = asyncio.create_task(_first(self._stopping.wait(), self._work_maybe.wait()))
        # A deadline of its own: a store whose connection died without a word must not keep
        # an idle worker asleep forever (the 10 s cover the store's own round trips).
        deadline_s = max(timeout_s, 0.0) + 10.0
        try:
            done, _ = await asyncio.wait(
                {waiter, stopper}, timeout=deadline_s, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                log.warning(
                    "the store's wait outlived its %.0fs deadline; looking again", deadline_s
                )
        finally:
            for pending in (waiter, stopper):
                pending.cancel()
            # A driver that drops a cancellation must not hold the worker's stop hostage;
            # backend.close() ends such a straggler by closing its connection.
            await asyncio.wait({waiter, stopper}, timeout=CANCEL_GRACE_S)
        if not waiter.done():
            log.debug("the store's wait ignored its cancellation; going on without it")
            return None
        if waiter.cancelled():
            return None
        if waiter.exception() is not None:
            log.error("waiting for work failed: %s", waiter.exception())
            await self._pause(1.0)
            return None
        jobs = waiter.result()
        if claim is None or jobs is None:
            return None
        if self._stopping.is_set():  # claimed as the stop came: hand them straight back
            for job in jobs:
                self.acks.remember(job, outcomes.released(job))
            return None
        return claim, jobs


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    """Return when the first of ``waits`` does (the others are cancelled)."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
