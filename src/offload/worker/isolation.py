"""Suspects: a job claimed after it crashed a worker runs where it cannot take others down.

A job that kills its process (``os._exit``, a segfault in an extension) takes with it every
job running beside it and every outcome not yet stored: the store charges each of them a
crash. Jobs that never misbehaved must not die of another's crashes, so a job claimed with
``crashes >= 1`` runs isolated: in a child process of its own when the worker knows its
app's ``module:attribute`` (a crash there is that job's failure alone), else alone (every
pending outcome stored first, nothing else running until it ends).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from offload.records import JobRecord
from offload.task import Task
from offload.worker import outcomes
from offload.worker.state import Forming, Running, WorkerState

log = logging.getLogger("offload.worker")


class Isolation(WorkerState):
    def _isolation_for(self, job: JobRecord, task: Task[Any, Any] | None) -> str | None:
        """How a freshly claimed job must run: None (as usual), "process" or "alone"."""
        if job.crashes < 1 or task is None or self.pool == "process":
            return None  # the process pool already runs every job in a child of its own
        if self.app_spec and task.defaults.batch is None:
            return "process"
        return "alone"

    async def _run_alone(self, running: Running) -> None:
        """Wait until every other job has ended and its outcome is stored, then run."""
        job = running.job
        log.warning(
            "job %s crashed a worker before (%d time(s)); it runs alone", job.id, job.crashes
        )
        try:
            async with self._alone_lock:
                self._hand_back_waiting()  # no job claimed ahead is left leased by its crash
                while self._others_active(running) and not self._stopping.is_set():
                    self._job_ended.clear()
                    await self._job_ended.wait()  # set as each job leaves (see _fill_slots)
                await self._store_pending_outcomes()
                if self._stopping.is_set():  # never started: hand it back, charged nothing
                    running.stop_reason = "shutdown"
                    raise asyncio.CancelledError
                task = self.app.tasks.get(job.task)
                if task is not None and task.defaults.batch is not None:
                    # a micro-batched task takes a list: it runs as a batch of one
                    self._batched_jobs += 1
                    self._batch_calls_count += 1
                    await self._execute_batch(Forming(task, 1, [running]))
                else:
                    await self._execute(running)
        except asyncio.CancelledError:
            if running.job.id in self._running and self._running[job.id] is running:
                # stopped before it started: hand it back, charged nothing
                self._forget(running)
                self.acks.remember(job, outcomes.released(job) if running.stop_reason == "shutdown"
                               else None)  # fmt: skip
            if running.stop_reason is None:
                raise
        finally:
            self._alone_pending -= 1
            self._fill_slots()  # the jobs held back while it ran may start now

    def _others_active(self, running: Running) -> bool:
        if self._batch_calls_count > len(self._forming):  # a micro-batch call runs
            return True
        return any(
            other is not running and other.task is not None and other.isolation != "alone"
            for other in self._running.values()
        )

    async def _store_pending_outcomes(self) -> None:
        """Before a suspect starts, store what the others did: its crash must not undo it."""
        while self.acks.pending and not self._stopping.is_set():
            try:
                if await self.acks.flush_once():
                    continue
            except Exception:
                log.exception("recording outcomes before a suspect job failed")
            await asyncio.sleep(0.5)
