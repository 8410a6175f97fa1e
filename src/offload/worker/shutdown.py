"""Stopping: a first signal drains running jobs within the grace period, a second exits.

A job whose ``def`` thread still runs when the grace ends is not handed back at once: it is
not over, and another worker must not start it beside the first copy. It is deferred by
one lease, charged nothing, and the worker exits (task threads are daemon threads, so the
thread ends with the process) long before another worker may start it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from typing import Any

from offload.worker.idle import CANCEL_GRACE_S
from offload.worker.state import WorkerState

log = logging.getLogger("offload.worker")


class Shutdown(WorkerState):
    def request_stop(self) -> None:
        """First call: finish running jobs within the grace period. Second: exit at once."""
        self._stop_count += 1
        if self._stop_count == 1:
            log.info(
                "stopping: no new jobs; waiting up to %.0fs for %d running job(s) "
                "(signal again to exit at once)",
                self.grace_s, len(self._running),
            )  # fmt: skip
            self._stopping.set()
            self._slot_freed.set()
        else:
            log.warning("second stop signal: exiting now; running jobs return when leases expire")
            os._exit(1)

    async def _drain_running(self) -> None:
        self._dispatch_all()  # a forming micro-batch runs now rather than waiting to fill
        self._hand_back_waiting()  # claimed but never started: straight back
        tasks = [r.task for r in self._running.values() if r.task is not None]
        tasks += list(self._batch_calls)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.grace_s)
            if pending:
                log.warning("handing unfinished job(s) back to the queue")
                for running in list(self._running.values()):
                    running.stop_reason = "shutdown"
                    running.cancelled.set()
                    if running.task is not None:
                        running.task.cancel()
                for call in self._batch_calls:
                    call.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

    async def _starting(self) -> None:
        """The first store calls: the registry entry and the pause marks."""
        await self.presence.beat()
        await self.watch.load_paused()

    async def _unless_stopped(self, step: Coroutine[Any, Any, None]) -> bool:
        """Run ``step`` unless a stop comes first (it is then cancelled); True if it ended."""
        running = asyncio.ensure_future(step)
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({running, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not running.done():
                running.cancel()
                await asyncio.wait({running}, timeout=CANCEL_GRACE_S)
        if not running.done() or running.cancelled():
            running.add_done_callback(lambda t: t.cancelled() or t.exception())
            return False
        running.result()  # a surprise in it is the worker's to report, as before
        return True
