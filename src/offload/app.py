"""``Offload``: configuration, the task registry and enqueueing (sync and async)."""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar, cast, overload

from offload import batches, bounds, chains, windows
from offload.admin import Admin
from offload.backends import open_backend
from offload.backends.base import Backend, IdsParams
from offload.backends.urls import display_url
from offload.batches import Batch, batch_enqueue
from offload.bounds import check_queue_name
from offload.calls import TaskOptions
from offload.errors import ConfigurationError, JobNotFound
from offload.files import LocalFiles, default_files_url, files_from_url
from offload.hooks import Hooks
from offload.ids import IdGenerator
from offload.job import Job
from offload.limits import ConcurrencyLimit, Limit, RateLimit, named_limits
from offload.microbatch import BatchSettings
from offload.notices import task as notices_task
from offload.retry import Backoff, as_policy
from offload.scheduler import Missed, Schedule
from offload.storeclock import StoreClock
from offload.task import BatchDecorator, Signature, Task, TaskDecorator
from offload.windows import Window

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_URL = "sqlite:///offload.db"


class Offload:
    """One application: where jobs are stored and which tasks exist.

    ``url`` defaults to ``$OFFLOAD_URL``, then ``sqlite:///offload.db``. The
    backend opens on first use, so defining an app costs nothing at import.
    ``fair_queues``: in these queues claims take the jobs' owners in turn, so one
    tenant's backlog cannot hold another tenant's job back.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        default_queue: str = "default",
        default_retries: int = 3,
        lease_s: float = 30.0,
        retention_s: float = 7 * 24 * 3600,
        counts_retention_s: float = 7 * 24 * 3600,
        max_crashes: int = 3,
        clock: Callable[[], float] | None = None,
        backend: Backend | None = None,
        fair_queues: Iterable[str] = (),
        files_url: str | None = None,
        webhook_secrets: Mapping[str, str | Sequence[str]] | None = None,
    ) -> None:
        self.url = url or os.environ.get("OFFLOAD_URL") or DEFAULT_URL
        #: Where jobs' files go (``$OFFLOAD_FILES_URL``; beside a SQLite store by default).
        self.files_url = files_url or os.environ.get("OFFLOAD_FILES_URL")
        self._files: LocalFiles | None = None
        if isinstance(max_crashes, bool) or not isinstance(max_crashes, int) or max_crashes < 1:
            raise ConfigurationError(f"max_crashes must be an int >= 1, got {max_crashes!r}")
        self.default_queue = check_queue_name(default_queue)
        self.default_retries = bounds.retries(default_retries)
        self.lease_s = bounds.duration_s(lease_s, "lease_s")
        self.retention_s = bounds.delay_s(retention_s, "retention_s")
        #: How long per-minute counts (charts, metrics) are kept.
        self.counts_retention_s = bounds.duration_s(counts_retention_s, "counts_retention_s")
        self.max_crashes = max_crashes
        self.clock = clock
        if isinstance(fair_queues, str):
            raise ConfigurationError("fair_queues takes a list of queue names, e.g. ['convert']")
        #: Queues whose claims take owners in turn (see README, "Fair queues").
        self.fair_queues = frozenset(check_queue_name(q) for q in fair_queues)
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.schedules: dict[str, Schedule] = {}
        #: What features do around each job's run (see hooks.py); the worker calls them.
        self.hooks = Hooks()
        for feature in (windows, chains, batches):
            feature.register(self.hooks)
        #: Signing secrets of webhook notices by URL prefix (else $OFFLOAD_WEBHOOK_SECRET).
        self.webhook_secrets: dict[str, list[str]] = {
            prefix: [value] if isinstance(value, str) else list(value)
            for prefix, value in (webhook_secrets or {}).items()
        }
        self.new_id = IdGenerator()
        self._backend = backend
        self._backend_lock = threading.Lock()
        self._store_clock = StoreClock(self.now)
        self._admin: Admin | None = None
        notices_task.register(self)  # the internal task that delivers notices
        batches.register_tasks(self)  # a batch's callback when it has notices but no callback

    def __repr__(self) -> str:
        return f"<Offload {self.display_url} tasks={sorted(self.tasks)}>"

    def now(self) -> float:
        """The app's clock (the test clock if one was given), for times computed client-side."""
        return self.clock() if self.clock is not None else time.time()

    def store_now(self) -> float:
        """The store's clock, which every time decision uses (callers' clocks disagree)."""
        return self._store_clock.now_blocking(self.backend.blocking)

    async def store_now_async(self) -> float:
        return await self._store_clock.now(self.backend)

    @property
    def display_url(self) -> str:
        """The URL with any password masked, for logs and messages."""
        return display_url(self.url)

    # -- configuration -----------------------------------------------------
    @property
    def admin(self) -> Admin:
        """The management API: find, filter, cancel, retry, delete, pause queues, watch
        workers and live events (``app.admin.aio`` for async callers)."""
        if self._admin is None:
            self._admin = Admin(self)
        return self._admin

    @property
    def files(self) -> LocalFiles:
        """The store of jobs' files (see ``current_job().attach``)."""
        if self._files is None:
            self._files = files_from_url(self.files_url or default_files_url(self.url))
        return self._files

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            with self._backend_lock:
                if self._backend is None:
                    self._backend = open_backend(self.url, clock=self.clock)
        return self._backend

    def use_url(self, url: str) -> None:
        """Point the app at another store (the CLI's ``--url``) before it is first used."""
        if self._backend is not None:
            raise ConfigurationError("use_url() must come before the backend is first used")
        self.url = url

    def close(self) -> None:
        if self._backend is not None:
            import asyncio

            asyncio.run(self._backend.close())
            self._backend = None

    async def aclose(self) -> None:
        if self._backend is not None:
            await self._backend.close()
            self._backend = None

    # -- tasks -------------------------------------------------------------
    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        retries: int | None = None,
        backoff: Backoff | None = None,
        timeout_s: float | None = None,
        lease_s: float | None = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        window: str | None = None,
        rate: str | None = None,
        concurrency: int | None = None,
        limits: Sequence[Limit] = (),
        public: bool = False,
        secret: Sequence[str] = (),
        secret_result: bool = False,
    ) -> TaskDecorator: ...
    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        batch_size: int,
        batch_wait_s: float | None = None,
        name: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        retries: int | None = None,
        backoff: Backoff | None = None,
        timeout_s: float | None = None,
        lease_s: float | None = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        window: str | None = None,
        public: bool = False,
        secret: Sequence[str] = (),
        secret_result: bool = False,
    ) -> BatchDecorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        retries: int | None = None,
        backoff: Backoff | None = None,
        timeout_s: float | None = None,
        lease_s: float | None = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        window: str | None = None,
        rate: str | None = None,
        concurrency: int | None = None,
        limits: Sequence[Limit] = (),
        batch_size: int | None = None,
        batch_wait_s: float | None = None,
        public: bool = False,
        secret: Sequence[str] = (),
        secret_result: bool = False,
    ) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(retries=5, ...)``.

        ``window``: jobs may only start within these daily hours, e.g.
        ``"01:00-05:00 Europe/Paris"``; they wait as scheduled until it opens.
        ``rate="10/s"`` and ``concurrency=2`` limit this task across all workers;
        ``limits=[RateLimit(..., key=...), ConcurrencyLimit(...)]`` split a limit by
        the job's arguments or share it between tasks by name. A job held back by a
        limit waits as scheduled without using up an attempt.
        ``batch_size=100, batch_wait_s=0.5``: the function takes a list and returns one
        result per item; ``enqueue(item)`` stores one job per item and a worker hands up
        to 100 of them to one call, waiting at most ``batch_wait_s`` to fill it.
        ``public=True``: clients may start it over the HTTP API (``offload serve``); no
        other task can be started there. ``secret=("password",)``: those arguments read
        ``[redacted]`` in the API, the CLI and notices; ``secret_result=True``: the result
        too (the task itself gets them whole).
        """
        retries = bounds.retries(self.default_retries if retries is None else retries)
        timeout_s = None if timeout_s is None else bounds.duration_s(timeout_s, "timeout_s")
        lease_s = None if lease_s is None else bounds.duration_s(lease_s, "lease_s")
        priority = bounds.priority(priority)
        try:
            policy = as_policy(backoff)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(str(exc)) from exc
        options = TaskOptions(
            queue=check_queue_name(queue or self.default_queue),
            priority=priority,
            max_attempts=retries + 1,
            backoff=policy,
            timeout_s=timeout_s,
            lease_s=lease_s,
            retry_on=retry_on,
            window=None if window is None else Window.parse(window),
            public=bool(public),
            secret=tuple(secret) if not isinstance(secret, str) else (secret,),
            secret_result=bool(secret_result),
        )
        batch = BatchSettings.make(batch_size, batch_wait_s)
        all_limits: list[Limit] = list(limits)
        if rate is not None:
            all_limits.append(RateLimit(rate))
        if concurrency is not None:
            all_limits.append(ConcurrencyLimit(concurrency))

        def register(function: Callable[..., Any]) -> Task[Any, Any]:
            if not callable(function):
                raise ConfigurationError(f"@app.task needs a function, got {function!r}")
            task_name = name or function.__name__
            unknown = set(options.secret) - set(inspect.signature(function).parameters)
            if unknown:
                raise ConfigurationError(
                    f"task {task_name!r}: secret= names no parameter of it: {sorted(unknown)}"
                )
            if task_name in self.tasks:
                raise ConfigurationError(
                    f"two tasks are named {task_name!r}; give one @app.task(name=...)"
                )
            named = replace(options, limits=named_limits(all_limits, task_name), batch=batch)
            if batch is not None and named.limits:
                raise ConfigurationError(
                    f"task {task_name!r}: limits do not apply to micro-batched tasks yet; "
                    "limit the callers of the batch instead"
                )
            task: Task[Any, Any] = Task(self, function, task_name, named)
            self.tasks[task_name] = task
            return task

        return register(fn) if fn is not None else register

    # -- schedules ---------------------------------------------------------
    def schedule(
        self,
        task: Task[Any, Any],
        *,
        cron: str,
        tz: str = "UTC",
        missed: Missed | str = Missed.SKIP,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> Schedule:
        """Run ``task(*args, **kwargs)`` at every time ``cron`` names in time zone ``tz``.

        The leader worker enqueues each due run exactly once; ``missed`` says what
        happens to runs that fell due while no worker was up (skip, once, all).
        """
        if not isinstance(task, Task) or task.app is not self:
            raise ConfigurationError(f"schedule() needs a task of this app, got {task!r}")
        schedule_name = name or task.name
        if schedule_name in self.schedules:
            raise ConfigurationError(
                f"two schedules are named {schedule_name!r}; give one schedule(name=...)"
            )
        entry = Schedule(
            name=schedule_name, task=task, cron=cron, tz=tz,
            missed=cast(Missed, missed),  # checked, with a clear message, by Schedule
            args=tuple(args), kwargs=dict(kwargs or {}),
        )  # fmt: skip
        self.schedules[schedule_name] = entry
        return entry

    def periodic(
        self,
        cron: str,
        *,
        tz: str = "UTC",
        missed: Missed | str = Missed.SKIP,
        name: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        retries: int | None = None,
        timeout_s: float | None = None,
    ) -> TaskDecorator:
        """``@app.periodic("0 2 * * *", tz="Europe/Paris")``: a task that takes no arguments,
        run on a cron schedule (see ``schedule``)."""

        def register(fn: Callable[..., Any]) -> Task[Any, Any]:
            task = self.task(
                name=name, queue=queue, priority=priority, retries=retries, timeout_s=timeout_s
            )(fn)
            self.schedule(task, cron=cron, tz=tz, missed=missed)
            return task

        return cast(TaskDecorator, register)

    # -- batches -----------------------------------------------------------
    def batch(
        self,
        signatures: Sequence[Signature[Any]],
        *,
        on_complete: Signature[Any] | None = None,
        notify: Sequence[Any] = (),
    ) -> Batch:
        """Store jobs as one batch; ``on_complete`` runs once after every member has ended,
        with a list of their outcomes (id, state, result, error) as its first argument.
        ``notify=[Email(...), Webhook(...)]``: one notice for the whole batch, after its
        callback (``on``: success when every member succeeded, failure when one did not)."""
        for signature in [*signatures, *([on_complete] if on_complete else [])]:
            if signature.task.app is not self:
                raise ConfigurationError(f"{signature.task!r} belongs to another Offload app")
        batch_id, params = batch_enqueue(self, list(signatures), on_complete, notify)
        self.backend.blocking.enqueue(params)
        return Batch(self, batch_id)

    async def batch_async(
        self,
        signatures: Sequence[Signature[Any]],
        *,
        on_complete: Signature[Any] | None = None,
        notify: Sequence[Any] = (),
    ) -> Batch:
        for signature in [*signatures, *([on_complete] if on_complete else [])]:
            if signature.task.app is not self:
                raise ConfigurationError(f"{signature.task!r} belongs to another Offload app")
        batch_id, params = batch_enqueue(self, list(signatures), on_complete, notify)
        await self.backend.enqueue(params)
        return Batch(self, batch_id)

    def job(self, job_id: str) -> Job[Any]:
        """A handle on a stored job; raises ``JobNotFound`` if there is none."""
        found = self.backend.blocking.get(IdsParams(ids=[job_id]))
        if not found:
            raise JobNotFound(job_id)
        return Job(self, found[0])
