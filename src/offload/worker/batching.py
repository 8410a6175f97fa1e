"""Micro-batches: jobs of one batched task gather, then run as a single call."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

from offload.backends.base import Outcome
from offload.context import JobContext
from offload.microbatch import ItemsMismatch, split_results, wrap_call
from offload.records import ErrorInfo
from offload.serialize import PayloadError
from offload.task import Task
from offload.worker import outcomes
from offload.worker.executors import Invocation
from offload.worker.state import Forming, Running, WorkerState

log = logging.getLogger("offload.worker")


class Batching(WorkerState):
    def _gather(self, task: Task[Any, Any], running: Running) -> None:
        settings = task.defaults.batch
        assert settings is not None
        self._batched_jobs += 1
        forming = self._forming.get(task.name)
        if forming is None:
            forming = self._forming[task.name] = Forming(task, settings.size, [])
            self._batch_calls_count += 1
            loop = asyncio.get_running_loop()
            forming.timer = loop.call_later(settings.wait_s, self._dispatch, task.name)
        forming.members.append(running)
        if len(forming.members) >= settings.size or self._stopping.is_set():
            self._dispatch(task.name)

    def _dispatch(self, task_name: str) -> None:
        forming = self._forming.pop(task_name, None)
        if forming is None:
            return
        if forming.timer is not None:
            forming.timer.cancel()
        call = asyncio.create_task(self._execute_batch(forming), name=f"offload-batch-{task_name}")
        self._batch_calls.add(call)
        call.add_done_callback(self._batch_calls.discard)

    def _dispatch_all(self) -> None:
        for name in list(self._forming):
            self._dispatch(name)

    async def _execute_batch(self, forming: Forming) -> None:
        task, members = forming.task, forming.members
        outcomes_by_id: dict[str, Outcome | None] = {}
        try:
            ready: list[tuple[Running, Any]] = []
            for running in members:
                try:
                    args, kwargs = task.codec.decode_args(running.job.payload)
                except PayloadError as exc:
                    outcomes_by_id[running.job.id] = outcomes.poison(
                        running.job, "PayloadError", str(exc)
                    )
                    continue
                ready.append((running, args[0] if args else next(iter(kwargs.values()))))
            if ready:
                outcomes_by_id.update(await self._call_batch(task, ready))
            for running in members:
                job = running.job
                outcome = outcomes_by_id.get(job.id)
                if outcome is not None and running.stop_reason != "lost":
                    outcome = await self.app.hooks.settle(self.app, job, outcome)
                outcomes_by_id[job.id] = None if running.stop_reason == "lost" else outcome
        except asyncio.CancelledError:
            for running in members:
                if running.job.id not in outcomes_by_id or running.stop_reason == "shutdown":
                    shutdown = running.stop_reason == "shutdown"
                    outcomes_by_id[running.job.id] = (
                        outcomes.released(running.job) if shutdown else None
                    )
        finally:
            self._batched_jobs -= len(members)
            self._batch_calls_count -= 1
            for running in members:
                self._forget(running)
        for running in members:
            self.acks.remember(running.job, outcomes_by_id.get(running.job.id))

    async def _call_batch(
        self, task: Task[Any, Any], ready: list[tuple[Running, Any]]
    ) -> dict[str, Outcome]:
        """One call for every item; each job gets the outcome of its own entry."""
        jobs = [running.job for running, _ in ready]
        first = ready[0][0]
        context = JobContext(
            id=first.job.id,
            task=first.job.task,
            attempt=first.job.attempt,
            max_attempts=first.job.max_attempts,
            report=self._progress_reporter(first.job),
            cancelled=first.cancelled,
            attach=self._attacher(first.job.id),
        )
        call = Invocation(
            self._batch_call_task(task), b"", [[item for _, item in ready]], {}, context,
            first.cancelled,
        )  # fmt: skip
        assert self._executor is not None
        backoff = task.defaults.backoff
        try:
            async with asyncio.timeout(task.defaults.timeout_s):
                encoded = await self._executor.run(call)
        except TimeoutError:
            first.cancelled.set()
            error = ErrorInfo(
                type="TimeoutError",
                message=f"the batch call ran longer than its timeout of {task.defaults.timeout_s}s",
            )
            failure = outcomes.Failure(error, retryable=True)
            return {job.id: outcomes.failed(job, failure, backoff) for job in jobs}
        except asyncio.CancelledError:
            raise
        except ItemsMismatch as exc:  # a bug in the task: retrying cannot fix it
            failure = outcomes.Failure(outcomes.error_info(exc), retryable=False)
            return {job.id: outcomes.failed(job, failure, backoff) for job in jobs}
        except BaseException as exc:  # the whole call failed: every item did
            failure = outcomes.describe_failure(exc, task.defaults.retry_on)
            log.info(
                "batch of %d %s job(s) failed: %s", len(jobs), task.name, failure.error.message
            )
            return {job.id: outcomes.failed(job, failure, backoff) for job in jobs}
        try:
            entries = split_results(encoded)
        except ValueError as exc:  # cannot happen with wrap_call; never strand the jobs
            failure = outcomes.Failure(outcomes.error_info(exc), retryable=False)
            return {job.id: outcomes.failed(job, failure, backoff) for job in jobs}
        decided: dict[str, Outcome] = {}
        for job, entry in zip(jobs, entries, strict=True):
            if entry.error is None:
                decided[job.id] = outcomes.succeeded(job, bytes(entry.result))
            else:
                failure = outcomes.Failure(entry.error, entry.retryable)
                decided[job.id] = outcomes.failed(job, failure, backoff)
        return decided

    def _batch_call_task(self, task: Task[Any, Any]) -> Task[Any, Any]:
        """The user's function wrapped so that each entry crosses as data (an exception too)."""
        wrapped = self._batch_call_tasks.get(task.name)
        if wrapped is None:
            retry_on = task.defaults.retry_on

            def describe(exc: BaseException) -> tuple[ErrorInfo, bool]:
                failure = outcomes.describe_failure(exc, retry_on)
                return failure.error, failure.retryable

            fn = wrap_call(task.fn, task.is_async, describe)
            wrapped = Task(self.app, fn, task.name, replace(task.defaults, batch=None))
            self._batch_call_tasks[task.name] = wrapped
        return wrapped
