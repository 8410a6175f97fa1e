"""One attempt of one job: decode, admit through limits, call, classify the outcome."""

from __future__ import annotations

import asyncio
import heapq
import logging
import threading
import time
from typing import Any

from offload.backends.base import BackendError, Outcome, ProgressUpdate
from offload.context import JobContext
from offload.limits import Admission, keyed_limits
from offload.records import ErrorInfo, JobRecord
from offload.serialize import PayloadError
from offload.task import Task
from offload.worker import outcomes
from offload.worker.executors import Invocation
from offload.worker.process_pool import ChildDied, ChildFailed, ProcessExecutor
from offload.worker.state import Running, WorkerState

log = logging.getLogger("offload.worker")
#: A job whose run could not be prepared for want of the store waits this long.
PREPARE_RETRY_S = 5.0


class Attempts(WorkerState):
    async def _attempt(self, running: Running) -> Outcome:
        job = running.job
        if job.meta and self.app.hooks.before_run:  # every such hook reads a meta key
            try:
                job = running.job = await self.app.hooks.prepare(self.app, job)
            except BackendError as exc:  # the store is out: try again later, charged nothing
                log.warning("job %s: could not prepare its run (%s); deferred", job.id, exc)
                return outcomes.deferred(job, PREPARE_RETRY_S)
        task = self.app.tasks.get(job.task)
        if task is None:
            known = ", ".join(sorted(self.app.tasks)) or "none"
            log.error("job %s: unknown task %r; it is dead-lettered", job.id, job.task)
            return outcomes.poison(
                job,
                "UnknownTask",
                f"no task named {job.task!r} is registered in this worker's app "
                f"(known: {known}); deploy the code that defines it, then retry the job",
            )
        try:
            args, kwargs = task.codec.decode_args(job.payload)
        except PayloadError as exc:
            log.error("job %s: undecodable payload (%s); it is dead-lettered", job.id, exc)
            return outcomes.poison(job, "PayloadError", str(exc))
        except Exception as exc:  # a decoder that raised anything else: the payload's fault too
            log.error("job %s: arguments raised %r while decoding; dead-lettered", job.id, exc)
            message = f"the arguments could not be decoded: {type(exc).__name__}: {exc}"
            return outcomes.poison(job, "PayloadError", message)
        admission: Admission | None = None
        if task.defaults.limits:
            try:
                keyed = keyed_limits(task.defaults.limits, args, kwargs)
            except Exception as exc:  # a key function that raised: the job's fault
                failure = outcomes.describe_failure(exc, task.defaults.retry_on)
                return outcomes.failed(job, failure, task.defaults.backoff)
            admission = await self.limiter.admit(job, keyed)
            if admission.deferral is not None:
                assert admission.not_before is not None
                self._defer_not_before[job.id] = admission.not_before
                heapq.heappush(self._deferred_due, admission.not_before)
                return admission.deferral
        try:
            return await self._call(running, task, args, kwargs)
        finally:
            if admission is not None and admission.held:
                await self.limiter.release(job, admission)

    async def _call(
        self,
        running: Running,
        task: Task[Any, Any],
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> Outcome:
        job = running.job
        context = JobContext(
            id=job.id,
            task=job.task,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            report=self._progress_reporter(job),
            cancelled=running.cancelled,
            attach=self._attacher(job.id),
        )
        call = Invocation(task, job.payload, args, kwargs, context, running.cancelled)
        executor = self._executor
        assert executor is not None
        if running.isolation == "process":  # a suspect: a child of its own (see isolation)
            executor = ProcessExecutor(self.app_spec or "", 1, respawn=False, forked=True)
        try:
            if isinstance(executor, ProcessExecutor) and executor is not self._executor:
                await executor.start()
                await executor.warm()  # its start-up is not the task's time
            began = time.monotonic()
            try:
                async with asyncio.timeout(job.timeout_s):
                    result = await executor.run(call)
            finally:
                self._ran(time.monotonic() - began)  # what claiming ahead sizes itself by
        except TimeoutError:
            running.cancelled.set()
            failure = outcomes.Failure(
                ErrorInfo(
                    type="TimeoutError",
                    message=f"the task ran longer than its timeout of {job.timeout_s}s",
                ),
                retryable=True,
            )
            return outcomes.failed(job, failure, task.defaults.backoff)
        except ChildFailed as exc:
            message = exc.message
            failure = outcomes.Failure(message.error, message.retryable, message.delay_s)
            if message.payload_error:
                return outcomes.poison(job, "PayloadError", message.error.message)
            return outcomes.failed(job, failure, task.defaults.backoff)
        except ChildDied as exc:
            failure = outcomes.Failure(outcomes.error_info(exc, with_traceback=False), True)
            return outcomes.failed(job, failure, task.defaults.backoff)
        except asyncio.CancelledError:
            running.abandoned = call.abandoned  # its thread still runs: see _execute
            raise
        except BaseException as exc:  # a bad job never takes the worker down
            failure = outcomes.describe_failure(exc, task.defaults.retry_on)
            log.info("job %s (%s) failed: %s", job.id, job.task, failure.error.message)
            return outcomes.failed(job, failure, task.defaults.backoff)
        finally:
            if executor is not self._executor:
                await executor.close()
        return outcomes.succeeded(job, result)

    def _attacher(self, job_id: str) -> Any:
        files = self.app.files

        def attach(data: Any, name: str) -> Any:
            return files.put(job_id, name, data)

        return attach

    def _progress_reporter(self, job: JobRecord) -> Any:
        loop = self._loop
        assert loop is not None

        def report(fraction: float, message: str | None) -> None:
            if message is not None:  # text any store can hold, whatever the task passed
                message = outcomes.storable_text(str(message), outcomes.MAX_MESSAGE_CHARS)
            update = ProgressUpdate(
                id=job.id, delivery=job.delivery, progress=fraction, message=message
            )
            if threading.get_ident() == getattr(loop, "_thread_id", None):
                self.progress.queue(update)
            else:
                loop.call_soon_threadsafe(self.progress.queue, update)

        return report
