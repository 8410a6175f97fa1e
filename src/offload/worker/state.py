"""The worker's shared state: what each of its parts (fetch, attempts, micro-batches,
acknowledgements, leases) reads and writes, declared once so each part type-checks alone."""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from offload.app import Offload
from offload.backends.base import ClaimParams
from offload.limits import Limiter
from offload.records import JobRecord
from offload.task import Task
from offload.worker.acks import Acks
from offload.worker.executors import Executor
from offload.worker.leases import Leases
from offload.worker.maintenance import Maintenance
from offload.worker.presence import Presence
from offload.worker.process_pool import Pool
from offload.worker.progress import ProgressReports
from offload.worker.stats import WorkerStats
from offload.worker.tally import Tally
from offload.worker.watch import Watch


@dataclass
class Running:
    job: JobRecord
    cancelled: threading.Event
    task: asyncio.Task[None] | None = None
    stop_reason: str | None = None  # "lost" (cancelled or reaped elsewhere) or "shutdown"
    #: A job that crashed a worker before runs isolated: "process" or "alone" (isolation.py).
    isolation: str | None = None
    #: Stopped while its thread still ran: never handed back (it is not over yet).
    abandoned: bool = False


@dataclass
class Forming:
    """Jobs of one micro-batched task gathering for a single call."""

    task: Task[Any, Any]
    size: int
    members: list[Running]
    timer: asyncio.TimerHandle | None = None


class WorkerState:
    """Attributes set by ``Worker.__init__``, and the methods one part calls on another."""

    app: Offload
    queues: list[str]
    concurrency: int
    pool: Pool
    burst: bool
    grace_s: float
    app_spec: str | None
    idle_check_s: float
    name: str
    stats: WorkerStats
    maintenance: Maintenance
    limiter: Limiter
    _deferred_due: list[float]
    _defer_not_before: dict[str, float]
    _waiting: collections.deque[Running]
    prefetch: int | None
    _serves_batches: bool
    _run_s_avg: float | None  # a moving average of jobs' run times, None before the first
    _running: dict[str, Running]
    _forming: dict[str, Forming]
    _batch_calls: set[asyncio.Task[None]]
    _batched_jobs: int
    _batch_calls_count: int
    _batch_call_tasks: dict[str, Task[Any, Any]]
    _executor: Executor | None
    _stop_count: int
    _stopping: asyncio.Event
    _slot_freed: asyncio.Event
    _loop: asyncio.AbstractEventLoop | None
    _alone_lock: asyncio.Lock  # one suspect job runs alone at a time
    _job_ended: asyncio.Event  # set each time a job leaves the running set
    _alone_pending: int  # suspect jobs waiting to run alone, or running: nothing else starts
    #: Set when an idle worker should look for work again without the store saying so.
    _work_maybe: asyncio.Event
    presence: Presence  # the worker's entry in the store's registry
    leases: Leases  # the heartbeat
    acks: Acks  # outcomes not yet stored
    progress: ProgressReports  # running jobs' reports, sent a few times a second
    watch: Watch  # live events: cancels reach running jobs, pauses the claims
    tally: Tally  # per-minute counts by queue and task

    if TYPE_CHECKING:

        @property
        def lease_s(self) -> float: ...

        async def _pause(self, seconds: float) -> None: ...

        def _forget(self, running: Running) -> None: ...

        def _fill_slots(self) -> None: ...

        def _launch(self, running: Running) -> None: ...

        def _dispatch_all(self) -> None: ...

        async def _execute(self, running: Running) -> None: ...
        async def _execute_batch(self, forming: Forming) -> None: ...

        def _progress_reporter(self, job: JobRecord) -> Any: ...
        def _attacher(self, job_id: str) -> Any: ...

        def _stop_job(self, job_id: str, delivery: int | None, why: str) -> bool: ...

        def _pop_due_deferred(self) -> bool: ...

        def _ran(self, run_s: float) -> None: ...

        def _hand_back_waiting(self) -> None: ...

        def _claim_params(self) -> ClaimParams | None: ...
