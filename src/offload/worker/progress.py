"""Progress reports: what running jobs say of themselves, sent to the store a few times a
second whatever a task's chattiness (only the newest report of each job is kept)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from offload.backends.base import Backend, BackendError, ProgressParams, ProgressUpdate

log = logging.getLogger("offload.worker")


class ProgressReports:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._pending: dict[str, ProgressUpdate] = {}
        self._needed = asyncio.Event()

    def queue(self, update: ProgressUpdate) -> None:
        self._pending[update.id] = update
        self._needed.set()

    async def loop(self) -> None:
        while True:
            await self._needed.wait()
            self._needed.clear()
            try:
                await self.flush()
            except Exception:  # progress is best effort; the loop must go on
                log.exception("recording progress failed (jobs %s)", ", ".join(self._pending))
            await asyncio.sleep(0.2)  # coalesce chatty tasks into a few writes a second

    async def flush_for(self, ids: Collection[str]) -> None:
        """Send what is pending now if it concerns any of ``ids`` (jobs about to finish)."""
        if self._pending and any(job_id in self._pending for job_id in ids):
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        updates, self._pending = list(self._pending.values()), {}
        try:
            await self._backend.report_progress(ProgressParams(updates=updates))
        except BackendError as exc:
            log.warning("cannot record progress (%s)", exc)
        except Exception as exc:  # a report the store refuses: drop only that one
            if len(updates) == 1:
                log.warning("job %s: progress report not recorded (%s)", updates[0].id, exc)
                return
            for update in updates:
                try:
                    await self._backend.report_progress(ProgressParams(updates=[update]))
                except Exception as one:
                    log.warning("job %s: progress report not recorded (%s)", update.id, one)
