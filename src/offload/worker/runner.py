"""The worker: claim in batches, run, acknowledge in batches, keep leases alive.

The loop itself only moves jobs; retries, timeouts and leadership live in
``outcomes``, ``executors`` and ``maintenance``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from msgspec.structs import replace as replace_struct

from offload.app import Offload
from offload.backends.base import (
    BackendError,
    ClaimParams,
    FinishParams,
    HeartbeatParams,
    LeaseRef,
    Outcome,
    OutcomeKind,
    ProgressParams,
    ProgressUpdate,
    StoreRefused,
    WaitParams,
)
from offload.batches import BatchService
from offload.context import JobContext
from offload.limits import Admission, Limiter, keyed_limits
from offload.microbatch import ItemsMismatch, split_results, wrap_call
from offload.records import ErrorInfo, JobRecord
from offload.scheduler import CronService
from offload.serialize import PayloadError
from offload.task import Task
from offload.windows import keep_retry_in_window
from offload.worker import outcomes
from offload.worker.chains import hand_on
from offload.worker.executors import Executor, Invocation, LocalExecutor
from offload.worker.maintenance import Maintenance
from offload.worker.process_pool import ChildDied, ChildFailed, Pool, ProcessExecutor

log = logging.getLogger("offload.worker")
#: How long a cancelled store call may take to end before the worker goes on without it.
CANCEL_GRACE_S = 2.0
#: Features that adjust an attempt's outcome before it is acknowledged; each returns the
#: outcome untouched, after a dict lookup, for a job that does not use it.
OUTCOME_HOOKS = (keep_retry_in_window, hand_on)

RECONNECT_MAX_PAUSE_S = 5.0


@dataclass
class _Running:
    job: JobRecord
    cancelled: threading.Event
    task: asyncio.Task[None] | None = None
    stop_reason: str | None = None  # "lost" (cancelled or reaped elsewhere) or "shutdown"


@dataclass
class _Forming:
    """Jobs of one micro-batched task gathering for a single call."""

    task: Task[Any, Any]
    size: int
    members: list[_Running]
    timer: asyncio.TimerHandle | None = None


@dataclass
class WorkerStats:
    started: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0
    deferred: int = 0
    lost: int = 0
    rejected: int = 0


class Worker:
    def __init__(
        self,
        app: Offload,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 10,
        pool: Pool = "async",
        burst: bool = False,
        grace_s: float = 30.0,
        app_spec: str | None = None,
        idle_check_s: float | None = None,
        maintenance_interval_s: float = 1.0,
        name: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if pool not in ("async", "thread", "process"):
            raise ValueError(f"pool must be async, thread or process, not {pool!r}")
        if pool == "process" and not app_spec:
            raise ValueError("the process pool needs the application as module:attribute")
        self.app = app
        self.queues = list(queues or [app.default_queue])
        if pool == "process":
            batched = [t.name for t in app.tasks.values()
                       if t.defaults.batch and t.defaults.queue in self.queues]  # fmt: skip
            if batched:
                raise ValueError(
                    f"micro-batched tasks ({', '.join(batched)}) run on the async or thread "
                    "pool; give them a queue of their own served by such a worker"
                )
        self.concurrency = concurrency
        self.pool: Pool = pool
        self.burst = burst
        self.grace_s = grace_s
        self.app_spec = app_spec
        # How long an idle worker sleeps before looking again on its own. Stores that push
        # wake-ups (LISTEN/NOTIFY) need no polling; the others get a backstop.
        if idle_check_s is None:
            idle_check_s = 60.0 if app.backend.capabilities.push_wakeups else 1.0
        self.idle_check_s = idle_check_s
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{app.new_id()[-6:]}"
        self.stats = WorkerStats()
        self.maintenance = Maintenance(
            app.backend,
            owner=self.name,
            max_crashes=app.max_crashes,
            retention_s=app.retention_s,
            interval_s=maintenance_interval_s,
            # Leases are only reaped at their own pace: an idle leader may tick that slowly.
            idle_interval_s=min(5.0, app.lease_s / 2),
            services=[
                BatchService(),
                *([CronService(list(app.schedules.values()))] if app.schedules else []),
            ],
        )
        self.limiter = Limiter(app.backend, app.now)
        #: When the soonest job a limit deferred is due (app clock): an idle worker wakes then.
        self._deferred_due: list[float] = []  # a heap
        #: When each deferred job may start (app clock): its delay is counted at the flush.
        self._defer_not_before: dict[str, float] = {}
        #: Jobs claimed into a micro-batch's room that found every slot busy: they start,
        #: in order, as slots free up (leased and heartbeated meanwhile, not yet timed).
        self._waiting: collections.deque[_Running] = collections.deque()
        self._running: dict[str, _Running] = {}
        self._forming: dict[str, _Forming] = {}
        self._batch_calls: set[asyncio.Task[None]] = set()
        self._batched_jobs = 0  # jobs in _running that belong to a micro-batch
        self._batch_calls_count = 0  # micro-batches forming or running: one slot each
        self._batch_call_tasks: dict[str, Task[Any, Any]] = {}
        self._unacked: dict[str, Outcome] = {}
        self._unacked_jobs: dict[str, JobRecord] = {}
        self._progress: dict[str, ProgressUpdate] = {}
        self._executor: Executor | None = None
        self._stop_count = 0
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._flush_needed = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._flushes = 0
        self._progress_needed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- control -------------------------------------------------------------
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

    @property
    def lease_s(self) -> float:
        return self.app.lease_s

    # -- main ----------------------------------------------------------------
    async def run(self) -> WorkerStats:
        self._loop = asyncio.get_running_loop()
        self._executor = (
            ProcessExecutor(self.app_spec or "", self.concurrency)
            if self.pool == "process"
            else LocalExecutor(self.concurrency)
        )
        await self._executor.start()
        log.info(
            "worker %s on %s, queues %s, %d %s slot(s)",
            self.name, self.app.display_url, ",".join(self.queues), self.concurrency, self.pool,
        )  # fmt: skip
        helpers = [
            asyncio.create_task(self._flush_loop(), name="offload-flush"),
            asyncio.create_task(self._heartbeat_loop(), name="offload-heartbeat"),
            asyncio.create_task(self._progress_loop(), name="offload-progress"),
            asyncio.create_task(self.maintenance.run(self._stopping), name="offload-maint"),
        ]
        try:
            await self._fetch_loop()
            await self._drain_running()
            await self._flush_all()
        finally:
            self._stopping.set()
            for helper in helpers:
                helper.cancel()
            await asyncio.wait(helpers, timeout=CANCEL_GRACE_S)  # see _wait_for_work
            with contextlib.suppress(Exception):
                await self.maintenance.resign()
            await self._executor.close()
            # Connections and listeners belong to this event loop: release them with it.
            with contextlib.suppress(Exception):
                await self.app.backend.close()
        return self.stats

    async def _fetch_loop(self) -> None:
        backend = self.app.backend
        failures = 0
        empty_checks = 0
        woke_with: tuple[ClaimParams, list[JobRecord]] | None = None  # claimed on waking
        while not self._stopping.is_set():
            flushes_before = self._flushes
            if woke_with is not None:  # leased already: start them before anything else
                (params, jobs), woke_with = woke_with, None
            else:
                maybe_params = self._claim_params()
                if maybe_params is None:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                    continue
                params = maybe_params
                try:
                    jobs = await backend.claim(params)
                    if failures:
                        log.warning("the store is reachable again; resuming")
                    failures = 0
                except StoreRefused:
                    raise  # a configuration problem: retrying would only repeat the message
                except BackendError as exc:
                    failures += 1
                    pause_s = min(RECONNECT_MAX_PAUSE_S, 0.1 * 2**failures)
                    log.error("cannot claim jobs (%s); retrying in %.1fs", exc, pause_s)
                    await self._pause(pause_s)
                    continue
            for job in jobs:
                self._start(job)
            if jobs:
                empty_checks = 0
                if len(jobs) < params.limit and not self.burst:
                    # The queues ran dry: asking again would only come back empty. Sleep until
                    # the store wakes us (each store's wait first checks for ready work).
                    woke_with = await self._wait_for_work()
                    continue
                await asyncio.sleep(0)
                continue
            if self.burst:
                if flushes_before != self._flushes:
                    continue  # outcomes stored while the claim ran (a retry, say): look again
                if self._deferred_due and not self._running:
                    await self._wait_for_work()  # jobs a limit held back are still this run's
                    continue
                if not self._running and not self._unacked:
                    # SKIP LOCKED hides a ready row that another transaction (the leader's
                    # promotion, say) holds for a moment: confirm once before exiting.
                    empty_checks += 1
                    if empty_checks >= 2:
                        return
                    await self._pause(0.05)
                    continue
                await self._wait_for_slot_or_deferred()
                continue
            woke_with = await self._wait_for_work()

    def _claim_params(self) -> ClaimParams | None:
        """The claim that fills the free slots (and a forming micro-batch); None if full."""
        room = sum(f.size - len(f.members) for f in self._forming.values())
        free = self.concurrency - self._busy()
        if free <= 0 and room <= 0:
            return None
        free = max(free, 0) + room  # a forming micro-batch fills without taking slots
        return ClaimParams(queues=self.queues, limit=free, worker=self.name, lease_s=self.lease_s)

    def _busy(self) -> int:
        """Slots in use: running jobs, plus one per micro-batch forming or running."""
        idle = self._batched_jobs + len(self._waiting)
        return len(self._running) - idle + self._batch_calls_count

    def _pop_due_deferred(self) -> bool:
        """Forget deferrals that are due; True if there were any (time to claim them)."""
        now = self.app.now()
        due = False
        while self._deferred_due and self._deferred_due[0] <= now:
            heapq.heappop(self._deferred_due)
            due = True
        return due

    async def _wait_for_slot_or_deferred(self) -> None:
        if self._pop_due_deferred():
            return
        self._slot_freed.clear()
        timeout_s = None
        if self._deferred_due:
            timeout_s = self._deferred_due[0] - self.app.now() + 0.001
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._slot_freed.wait()

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
        waiter = asyncio.create_task(
            self.app.backend.wait(WaitParams(queues=self.queues, timeout_s=timeout_s, claim=claim))
        )
        stopper = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
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
                self._remember(job, outcomes.released(job))
            return None
        return claim, jobs

    # -- one job -------------------------------------------------------------
    def _start(self, job: JobRecord) -> None:
        stale = self._running.get(job.id)
        if stale is not None:  # reaped from this very worker and claimed again
            stale.stop_reason = "lost"
            stale.cancelled.set()
            if stale.task is not None:
                stale.task.cancel()
        busy = self._busy()
        running = _Running(job=job, cancelled=threading.Event())
        self._running[job.id] = running
        self.stats.started += 1
        task = self.app.tasks.get(job.task)
        if task is not None and task.defaults.batch is not None:
            self._gather(task, running)
        elif busy >= self.concurrency:
            self._waiting.append(running)
        else:
            self._launch(running)

    def _launch(self, running: _Running) -> None:
        name = f"offload-job-{running.job.id}"
        running.task = asyncio.create_task(self._execute(running), name=name)

    def _forget(self, running: _Running) -> None:
        """Drop a job from the running set (unless a newer claim of it replaced it) and
        start any job waiting for the slot it leaves."""
        if self._running.get(running.job.id) is running:
            del self._running[running.job.id]
        while self._waiting and self._busy() < self.concurrency and not self._stopping.is_set():
            waiting = self._waiting.popleft()
            if waiting.stop_reason == "lost":  # cancelled or reaped while it waited
                self._forget(waiting)
                self.stats.lost += 1
                continue
            self._launch(waiting)
        self._slot_freed.set()

    async def _execute(self, running: _Running) -> None:
        job = running.job
        outcome: Outcome | None
        try:
            outcome = await self._attempt(running)
            for hook in OUTCOME_HOOKS:
                outcome = await hook(self.app, job, outcome)
        except asyncio.CancelledError:
            outcome = outcomes.released(job) if running.stop_reason == "shutdown" else None
            if running.stop_reason is None:
                raise
        finally:
            self._forget(running)
        self._remember(job, outcome)

    def _remember(self, job: JobRecord, outcome: Outcome | None) -> None:
        if outcome is None:
            self.stats.lost += 1
            return
        self._count(outcome)
        self._unacked[job.id] = outcome
        self._unacked_jobs[job.id] = job
        self._flush_needed.set()

    # -- micro-batches -------------------------------------------------------
    def _gather(self, task: Task[Any, Any], running: _Running) -> None:
        settings = task.defaults.batch
        assert settings is not None
        self._batched_jobs += 1
        forming = self._forming.get(task.name)
        if forming is None:
            forming = self._forming[task.name] = _Forming(task, settings.size, [])
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

    async def _execute_batch(self, forming: _Forming) -> None:
        task, members = forming.task, forming.members
        outcomes_by_id: dict[str, Outcome | None] = {}
        try:
            ready: list[tuple[_Running, Any]] = []
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
                    for hook in OUTCOME_HOOKS:
                        outcome = await hook(self.app, job, outcome)
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
            self._remember(running.job, outcomes_by_id.get(running.job.id))

    async def _call_batch(
        self, task: Task[Any, Any], ready: list[tuple[_Running, Any]]
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

    def _count(self, outcome: Outcome) -> None:
        kind = outcome.kind.value
        if kind == "succeeded":
            self.stats.succeeded += 1
        elif kind == "retry":
            self.stats.retried += 1
        elif kind == "dead":
            self.stats.dead += 1
        elif kind == "release":
            self.stats.released += 1
        elif kind == "defer":
            self.stats.deferred += 1

    async def _attempt(self, running: _Running) -> Outcome:
        job = running.job
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
        running: _Running,
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
        )
        call = Invocation(task, job.payload, args, kwargs, context, running.cancelled)
        assert self._executor is not None
        try:
            async with asyncio.timeout(job.timeout_s):
                result = await self._executor.run(call)
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
            raise
        except BaseException as exc:  # a bad job never takes the worker down
            failure = outcomes.describe_failure(exc, task.defaults.retry_on)
            log.info("job %s (%s) failed: %s", job.id, job.task, failure.error.message)
            return outcomes.failed(job, failure, task.defaults.backoff)
        return outcomes.succeeded(job, result)

    def _progress_reporter(self, job: JobRecord) -> Any:
        loop = self._loop
        assert loop is not None

        def report(fraction: float, message: str | None) -> None:
            update = ProgressUpdate(
                id=job.id, delivery=job.delivery, progress=fraction, message=message
            )
            if threading.get_ident() == getattr(loop, "_thread_id", None):
                self._queue_progress(update)
            else:
                loop.call_soon_threadsafe(self._queue_progress, update)

        return report

    def _queue_progress(self, update: ProgressUpdate) -> None:
        self._progress[update.id] = update
        self._progress_needed.set()

    # -- acknowledgements ----------------------------------------------------
    async def _flush_loop(self) -> None:
        while True:
            await self._flush_needed.wait()
            self._flush_needed.clear()
            await self._flush_once()

    async def _flush_once(self) -> bool:
        """Send every pending outcome in one ``finish`` call; keep them on failure."""
        async with self._flush_lock:  # the shutdown flush must not resend an in-flight batch
            return await self._flush_locked()

    async def _flush_locked(self) -> bool:
        if not self._unacked:
            return True
        batch = list(self._unacked.values())
        try:
            sent = [self._as_sent(outcome) for outcome in batch]
            result = await self.app.backend.finish(FinishParams(outcomes=sent))
        except BackendError as exc:
            log.error("cannot record %d outcome(s) (%s); will retry", len(batch), exc)
            await self._pause(0.5)
            self._flush_needed.set()
            return False
        for outcome in batch:
            if self._unacked.get(outcome.id) is outcome:
                del self._unacked[outcome.id]
                self._defer_not_before.pop(outcome.id, None)
                self._unacked_jobs.pop(outcome.id, None)
        self._flushes += 1
        self._slot_freed.set()  # a burst worker re-checks for work once outcomes are stored
        if result.rejected:
            self.stats.rejected += len(result.rejected)
            log.warning(
                "%d outcome(s) refused: this worker no longer held their lease (cancelled or "
                "recovered by another worker)",
                len(result.rejected),
            )
        return True

    def _as_sent(self, outcome: Outcome) -> Outcome:
        """A deferral waits until its moment, not its delay counted from the flush."""
        not_before = self._defer_not_before.get(outcome.id)
        if outcome.kind is not OutcomeKind.DEFER or not_before is None:
            return outcome
        return replace_struct(outcome, retry_delay_s=max(0.0, not_before - self.app.now()))

    async def _flush_all(self) -> None:
        deadline = time.monotonic() + max(self.grace_s, 5.0)
        while self._unacked and time.monotonic() < deadline:
            if not await self._flush_once():
                await asyncio.sleep(0.5)
        await self._flush_progress()
        if self._unacked:
            log.error("%d outcome(s) could not be recorded; their jobs will run again",
                      len(self._unacked))  # fmt: skip

    async def _progress_loop(self) -> None:
        while True:
            await self._progress_needed.wait()
            self._progress_needed.clear()
            await self._flush_progress()
            await asyncio.sleep(0.2)  # coalesce chatty tasks into a few writes a second

    async def _flush_progress(self) -> None:
        if not self._progress:
            return
        updates, self._progress = list(self._progress.values()), {}
        try:
            await self.app.backend.report_progress(ProgressParams(updates=updates))
        except BackendError as exc:
            log.warning("cannot record progress (%s)", exc)

    # -- leases --------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        while True:
            leases = [r.job for r in self._running.values()] + list(self._unacked_jobs.values())
            shortest = min((j.lease_s or self.lease_s for j in leases), default=self.lease_s)
            await asyncio.sleep(shortest / 3)
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        jobs = [r.job for r in self._running.values()] + list(self._unacked_jobs.values())
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
        for job_id in result.lost:
            running = self._running.get(job_id)
            if running is not None and running.task is not None:
                log.info("job %s was cancelled or taken over; stopping it", job_id)
                running.stop_reason = "lost"
                running.cancelled.set()
                running.task.cancel()
            elif running is not None:  # in a micro-batch: its entry will be dropped
                running.stop_reason = "lost"
            self._unacked.pop(job_id, None)
            self._unacked_jobs.pop(job_id, None)

    # -- shutdown ------------------------------------------------------------
    async def _drain_running(self) -> None:
        self._dispatch_all()  # a forming micro-batch runs now rather than waiting to fill
        while self._waiting:  # claimed but never started: hand them straight back
            waiting = self._waiting.popleft()
            self._forget(waiting)
            self._remember(waiting.job, outcomes.released(waiting.job))
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


def run_worker(worker: Worker, *, install_signals: bool = True) -> WorkerStats:
    """Run a worker until it stops, with SIGTERM and SIGINT wired to a graceful stop."""

    async def main() -> WorkerStats:
        if install_signals:
            import signal

            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, worker.request_stop)
        return await worker.run()

    return asyncio.run(main())
