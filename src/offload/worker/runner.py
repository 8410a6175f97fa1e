"""The worker: claim in batches, run, acknowledge in batches, keep leases alive.

The loop itself only moves jobs. Its parts live beside it, one job each: ``slots``
(how much to claim), ``attempts`` (one job's call), ``batching`` (micro-batches),
``isolation`` (jobs that crashed a worker before), ``acks`` (outcomes and progress sent in
batches), ``leases`` (heartbeats), ``shutdown``; retries, timeouts and leadership live in
``outcomes``, ``executors`` and ``maintenance``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Sequence

from offload.admin.totals import CountsFolder
from offload.app import Offload
from offload.backends.base import (
    BackendError,
    ClaimParams,
    Outcome,
    StoreRefused,
)
from offload.files import FilesSweeper
from offload.limits import Limiter
from offload.records import JobRecord
from offload.scheduler import CronService
from offload.worker import outcomes
from offload.worker.acks import Acks
from offload.worker.attempts import Attempts
from offload.worker.batching import Batching
from offload.worker.executors import Executor, LocalExecutor
from offload.worker.idle import CANCEL_GRACE_S, Idle
from offload.worker.isolation import Isolation
from offload.worker.leases import Leases
from offload.worker.maintenance import Maintenance
from offload.worker.presence import Presence
from offload.worker.process_pool import Pool, ProcessExecutor
from offload.worker.progress import ProgressReports
from offload.worker.shutdown import Shutdown
from offload.worker.slots import Slots
from offload.worker.state import Forming, Running
from offload.worker.stats import WorkerStats
from offload.worker.tally import Tally
from offload.worker.watch import Watch

__all__ = ["Worker", "WorkerStats", "run_worker"]

log = logging.getLogger("offload.worker")
RECONNECT_MAX_PAUSE_S = 5.0
#: A burst worker gives up after this many failed claims in a row (0.2 + 0.4 s of pauses).
BURST_CLAIM_TRIES = 3


class Worker(Slots, Attempts, Batching, Isolation, Shutdown, Idle):
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
        prefetch: int | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if prefetch is not None and prefetch < 0:
            raise ValueError("prefetch must be 0 or more")
        if pool not in ("async", "thread", "process"):
            raise ValueError(f"pool must be async, thread or process, not {pool!r}")
        if pool == "process" and not app_spec:
            raise ValueError("the process pool needs the application as module:attribute")
        self.app = app
        self.queues = list(queues or [app.default_queue])
        batched = [t.name for t in app.tasks.values()
                   if t.defaults.batch and t.defaults.queue in self.queues]  # fmt: skip
        #: Micro-batched tasks claim by their batches' room, never ahead (Slots._prefetch).
        self._serves_batches = bool(batched)
        if pool == "process" and batched:
            raise ValueError(
                f"micro-batched tasks ({', '.join(batched)}) run on the async or thread "
                "pool; give them a queue of their own served by such a worker"
            )
        self.concurrency = concurrency
        #: Jobs claimed beyond the slots (see Slots._prefetch); None sizes it by run time.
        self.prefetch = prefetch
        self._run_s_avg: float | None = None
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
            counts_retention_s=app.counts_retention_s,
            interval_s=maintenance_interval_s,
            # Leases are only reaped at their own pace: an idle leader may tick that slowly.
            idle_interval_s=min(5.0, app.lease_s / 2),
            services=[
                *([CronService(list(app.schedules.values()))] if app.schedules else []),
                FilesSweeper(app.files),
                CountsFolder(),
            ],
        )
        self.limiter = Limiter(app.backend, app.now)
        #: When the soonest job a limit deferred is due (app clock): an idle worker wakes then.
        self._deferred_due: list[float] = []  # a heap
        #: When each deferred job may start (app clock): its delay is counted at the flush.
        self._defer_not_before: dict[str, float] = {}
        #: Jobs claimed into a micro-batch's room that found every slot busy: they start,
        #: in order, as slots free up (leased and heartbeated meanwhile, not yet timed).
        self._waiting: collections.deque[Running] = collections.deque()
        self._running: dict[str, Running] = {}
        self._forming: dict[str, Forming] = {}
        self._batch_calls: set[asyncio.Task[None]] = set()
        self._batched_jobs = 0  # jobs in _running that belong to a micro-batch
        self._batch_calls_count = 0  # micro-batches forming or running: one slot each
        self._batch_call_tasks = {}
        self._executor: Executor | None = None
        self._stop_count = 0
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._alone_lock = asyncio.Lock()
        self._alone_pending = 0
        self._job_ended = asyncio.Event()
        self.tally = Tally(self.name, app.counts_retention_s)
        self._work_maybe = asyncio.Event()
        self.presence = Presence(
            app.backend, name=self.name, queues=self.queues, concurrency=concurrency,
            lease_s=app.lease_s, running=lambda: sorted(self._running),
        )  # fmt: skip
        self.progress = ProgressReports(app.backend)
        self.acks = Acks(
            app.backend, now=app.now, stats=self.stats, tally=self.tally,
            not_before=self._defer_not_before, pause=self._pause, stored=self._slot_freed.set,
            before=self.progress.flush_for,
        )  # fmt: skip
        self.leases = Leases(
            app.backend, worker=self.name, lease_s=app.lease_s, held=self._held_jobs,
            lost=self._lease_lost, before_beat=self.presence.beat,
        )  # fmt: skip
        self.watch = Watch(
            app.backend, self.queues, stop_job=self._stop_job,
            queues_changed=self._look_again, pause=self._pause,
        )  # fmt: skip

    def _look_again(self) -> None:
        """The queues this worker serves changed: an idle fetch loop looks again."""
        self._slot_freed.set()
        self._work_maybe.set()

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
            asyncio.create_task(self.acks.loop(), name="offload-flush"),
            asyncio.create_task(self.leases.loop(), name="offload-heartbeat"),
            asyncio.create_task(self.progress.loop(), name="offload-progress"),
            asyncio.create_task(self.maintenance.run(self._stopping), name="offload-maint"),
            asyncio.create_task(self.watch.loop(), name="offload-watch"),
            asyncio.create_task(self._tally_loop(), name="offload-tally"),
            asyncio.create_task(self.presence.loop(), name="offload-presence"),
        ]
        try:
            # A pause set before this worker started holds from its first claim. A stop may
            # come while the store is slow to answer these: it is not held up by them.
            if await self._unless_stopped(self._starting()):
                await self._fetch_loop()
            await self._drain_running()
            await self.acks.flush_all(self.grace_s)
            await self.progress.flush()
        finally:
            self._stopping.set()
            for helper in helpers:
                helper.cancel()
            await asyncio.wait(helpers, timeout=CANCEL_GRACE_S)  # see _wait_for_work
            with contextlib.suppress(Exception):  # a store gone silent must not hold the exit
                async with asyncio.timeout(CANCEL_GRACE_S):  # the lock expires by its TTL anyway
                    await self.maintenance.resign()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CANCEL_GRACE_S):  # the entry expires anyway
                    await self.presence.leave()
                    await self.tally.flush(self.app.backend, self.app.now())
            await self._executor.close()
            # Connections and listeners belong to this event loop: release them with it.
            with contextlib.suppress(Exception):
                await self.app.backend.close()
        return self.stats

    async def _fetch_loop(self) -> None:
        failures = 0
        empty_checks = 0
        woke_with: tuple[ClaimParams, list[JobRecord]] | None = None  # claimed on waking
        outage = False  # claims fail for want of the store (told once, and its end)
        while not self._stopping.is_set():
            flushes_before = self.acks.flushes
            if woke_with is not None:  # leased already: start them before anything else
                (params, jobs), woke_with = woke_with, None
            else:
                maybe_params = self._claim_params()
                if maybe_params is None:
                    if self.burst and not self.watch.serving() and not self._running:
                        return  # every queue is paused: nothing is ready for this run
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                    continue
                params = maybe_params
                try:
                    maybe_jobs = await self._claim_unless_stopped(params)
                    if maybe_jobs is None:
                        continue  # stopping: the store hands back what that claim took
                    jobs = maybe_jobs
                    if outage:
                        log.warning("the store is reachable again; resuming")
                    failures, outage = 0, False
                except StoreRefused:
                    raise  # a configuration problem: retrying would only repeat the message
                except Exception as exc:  # an outage, or a surprise: never the end of the worker
                    failures += 1
                    if self.burst and failures >= BURST_CLAIM_TRIES:
                        raise  # a burst run is a batch job: it fails, with the one line
                    pause_s = min(RECONNECT_MAX_PAUSE_S, 0.1 * 2**failures)
                    if not isinstance(exc, BackendError):
                        log.exception("claiming jobs failed; retrying in %.1fs", pause_s)
                    elif self.burst:
                        log.warning("cannot claim jobs (%s); trying again", exc)
                    elif not outage:  # an outage is told once, and its end
                        outage = True
                        log.error("cannot claim jobs (%s); retrying until it is back", exc)
                    else:
                        log.debug("cannot claim jobs (%s); retrying in %.1fs", exc, pause_s)
                    await self._pause(pause_s)
                    continue
            for job in jobs:
                self._start_safely(job)
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
                if flushes_before != self.acks.flushes:
                    continue  # outcomes stored while the claim ran (a retry, say): look again
                if self._deferred_due and not self._running:
                    await self._wait_for_work()  # jobs a limit held back are still this run's
                    continue
                if not self._running and not self.acks.pending:
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

    # -- one job -------------------------------------------------------------
    def _start(self, job: JobRecord) -> None:
        stale = self._running.get(job.id)
        if stale is not None:  # reaped from this very worker and claimed again
            stale.stop_reason = "lost"
            stale.cancelled.set()
            if stale.task is not None:
                stale.task.cancel()
        if job.unreadable is not None:  # the store could not read its row: never run it
            log.error("job %s: unreadable (%s); it is dead-lettered", job.id, job.unreadable)
            message = f"the stored job could not be read ({job.unreadable}); it never ran"
            self.acks.remember(job, outcomes.poison(job, "UnreadableJob", message))
            return
        self.leases.added(job)
        busy = self._busy()
        running = Running(job=job, cancelled=threading.Event())
        self._running[job.id] = running
        self.stats.started += 1
        self.tally.started(job, self.app.now())
        task = self.app.tasks.get(job.task)
        running.isolation = self._isolation_for(job, task)
        if running.isolation is not None:
            self.acks.soon()  # what the others did is stored before it starts
        if running.isolation == "alone":
            self._alone_pending += 1
            name = f"offload-job-{job.id}-alone"
            running.task = asyncio.create_task(self._run_alone(running), name=name)
        elif task is not None and task.defaults.batch is not None:
            self._gather(task, running)
        elif busy >= self.concurrency or self._alone_pending:
            self._waiting.append(running)
        else:
            self._launch(running)

    def _start_safely(self, job: JobRecord) -> None:
        """Start a claimed job; a surprise here fails that job (retried), not the worker."""
        try:
            self._start(job)
        except Exception as exc:
            log.exception("job %s: the worker could not start it", job.id)
            held = self._running.get(job.id)
            if held is not None and held.job is job and held.task is None:
                forming = any(held in f.members for f in self._forming.values())
                if held in self._waiting or forming:
                    return  # it got as far as its place in line: it runs all the same
                self._forget(held)
            task = self.app.tasks.get(job.task)
            failure = outcomes.Failure(outcomes.error_info(exc), retryable=True)
            self.acks.remember(
                job, outcomes.failed(job, failure, task.defaults.backoff if task else None)
            )

    def _launch(self, running: Running) -> None:
        name = f"offload-job-{running.job.id}"
        running.task = asyncio.create_task(self._execute(running), name=name)

    def _forget(self, running: Running) -> None:
        """Drop a job from the running set (unless a newer claim of it replaced it) and
        start any job waiting for the slot it leaves."""
        if self._running.get(running.job.id) is running:
            del self._running[running.job.id]
        self._fill_slots()

    async def _execute(self, running: Running) -> None:
        job = running.job
        outcome: Outcome | None
        try:
            outcome = await self._attempt(running)
            outcome = await self.app.hooks.settle(self.app, job, outcome)
        except asyncio.CancelledError:
            shutdown = running.stop_reason == "shutdown"
            outcome = outcomes.released(job) if shutdown else None
            if shutdown and running.abandoned:  # never hand back a job that still runs
                lease_s = job.lease_s or self.lease_s
                log.warning(
                    "job %s still runs in its thread: it waits %.0fs (one lease, time for "
                    "this worker to exit) before it runs again", job.id, lease_s,
                )  # fmt: skip
                outcome = outcomes.left_running(job, lease_s)
            if running.stop_reason is None:
                raise
        finally:
            self._forget(running)
        self.acks.remember(job, outcome)


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
