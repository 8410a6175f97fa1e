"""Tasks: a function plus its options, and the typed ways to enqueue it."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

import msgspec
from msgspec.structs import replace as replace_struct

from offload import bounds, enqueueing
from offload.calls import CallOptions, Delay, TaskOptions, make_call_options
from offload.errors import ConfigurationError
from offload.ids import derived_id, id_time_ms
from offload.microbatch import item_signature
from offload.records import FollowUp, NewJob
from offload.serialize import ArgsCodec
from offload.states import JobState
from offload.windows import META_KEY as WINDOW_META_KEY
from offload.windows import Window

if TYPE_CHECKING:
    from offload.app import Offload
    from offload.job import Job

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Signature(Generic[R]):
    """A task with its arguments, not yet enqueued: for ``enqueue_many``, batches and chains."""

    task: Task[Any, R]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    call: CallOptions = CallOptions()  # noqa: RUF009 - frozen: one shared default is safe

    def to_new_job(self) -> NewJob:
        return self.task.new_job(self.args, self.kwargs, self.call)

    def __or__(self, then: Signature[Any]) -> Chain[Any]:
        """``a.s(x) | b.s()``: b runs after a succeeds, with a's result as its first argument."""
        return Chain((self,)) | then


@dataclass(frozen=True)
class Chain(Generic[R]):
    """Steps run one after another; each receives the previous step's result first.

    The steps still to come ride in the running job's ``meta``; the store inserts the
    next step, under an id derived from the current job's, with the current one's
    acknowledgement and only if it accepts it: a step cancelled or reaped while it ran
    hands nothing on, and a step that ran twice hands on once.
    """

    steps: tuple[Signature[Any], ...]

    def __or__(self, then: Signature[Any] | Chain[Any]) -> Chain[Any]:
        more = then.steps if isinstance(then, Chain) else (then,)
        for step in more:
            if not isinstance(step, Signature):
                raise ConfigurationError(f"a chain is made of task.s(...) signatures, got {step!r}")
        return Chain(self.steps + more)

    def _first_job(self) -> NewJob:
        first, rest = self.steps[0], self.steps[1:]
        new = first.to_new_job()
        meta = dict(new.meta)
        meta[CHAIN_META_KEY] = [chain_step(step) for step in rest]
        return replace_struct(new, meta=meta)

    def enqueue(self) -> Job[Any]:
        first = self.steps[0].task
        return enqueueing.enqueue_one(first.app, self._first_job())

    async def enqueue_async(self) -> Job[Any]:
        first = self.steps[0].task
        return await enqueueing.enqueue_one_async(first.app, self._first_job())


#: The final states each ``options(on_...=)`` follow-up is stored for.
END_OPTIONS: dict[str, tuple[JobState, ...]] = {
    "on_success": (JobState.SUCCEEDED,),
    "on_failure": (JobState.DEAD,),
    "on_cancel": (JobState.CANCELLED,),
}


def follow_up(
    parent: NewJob, option: str, then: Signature[Any], states: tuple[JobState, ...]
) -> FollowUp:
    """``then`` as a follow-up of ``parent``: the parent's id first among its arguments,
    under an id derived from the parent's (stored once however often the parent ends)."""
    job_id = derived_id(id_time_ms(parent.id), f"{parent.id}\0{option}")
    new = then.task.new_job((parent.id, *then.args), then.kwargs, then.call, job_id=job_id)
    job = replace_struct(new, owner=new.owner or parent.owner, fair=False)
    return FollowUp(on=states, job=job)


#: Where a job keeps the chain steps that follow it.
CHAIN_META_KEY = "chain"


def chain_step(step: Signature[Any]) -> dict[str, Any]:
    """A later step as plain JSON: its task, its own arguments and where it runs."""
    payload = step.task.codec.encode_args(step.args, step.kwargs, partial=True)
    d = step.task.defaults
    return {
        "task": step.task.name,
        "payload": payload.decode(),
        "queue": step.call.queue or d.queue,
        "priority": d.priority if step.call.priority is None else step.call.priority,
        "max_attempts": d.max_attempts,
        "lease_s": d.lease_s,
        "timeout_s": d.timeout_s,
    }


class ChainStep(msgspec.Struct, frozen=True):
    """The shape ``chain_step`` writes; a step read back is checked against it."""

    task: str
    payload: str
    queue: str
    priority: int = 0
    max_attempts: int = 1
    lease_s: float | None = None
    timeout_s: float | None = None


def job_from_step(
    step: Mapping[str, Any],
    first_arg: Any,
    *,
    job_id: str,
    owner: str | None,
    meta: dict[str, Any],
) -> NewJob:
    """A step written by ``chain_step``, with ``first_arg`` (a previous result, a batch's
    outcomes) put before its own arguments: how chains and batch callbacks run. Raises
    ``msgspec.ValidationError`` (a ``DecodeError``) for a step of another shape."""
    spec = msgspec.convert(step, ChainStep)
    args, kwargs = msgspec.json.decode(spec.payload, type=tuple[list[Any], dict[str, Any]])
    return NewJob(
        id=job_id, task=spec.task, queue=spec.queue,
        payload=msgspec.json.encode(([first_arg, *args], kwargs)),
        priority=spec.priority, max_attempts=spec.max_attempts,
        lease_s=spec.lease_s, timeout_s=spec.timeout_s, owner=owner, meta=meta,
    )  # fmt: skip


class _Enqueuer(Generic[P, R]):
    """The enqueue verbs, shared by a task and a task with per-call options."""

    _task: Task[P, R]
    _call: CallOptions

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Store one job durably and return its handle at once.

        ``connection=conn`` (a psycopg connection, when the task has no parameter
        of that name) writes the job in the caller's transaction; typed code says
        ``task.options(connection=conn).enqueue(...)``.
        """
        call = self._take_connection(kwargs)
        new = self._task.new_job(args, kwargs, call)
        return enqueueing.enqueue_one(self._task.app, new, call.connection)

    async def enqueue_async(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        call = self._take_connection(kwargs)
        if call.window or self._task.defaults.window:
            await self._task.app.store_now_async()  # placing it reads the store's clock
        new = self._task.new_job(args, kwargs, call)
        return await enqueueing.enqueue_one_async(self._task.app, new, call.connection)

    def _take_connection(self, kwargs: dict[str, Any]) -> CallOptions:
        if "connection" in kwargs and "connection" not in self._task.codec.signature.parameters:
            return replace(self._call, connection=kwargs.pop("connection"))
        return self._call

    def s(self, *args: P.args, **kwargs: P.kwargs) -> Signature[R]:
        # Wrong types fail here, not when the batch is sent; leading arguments may be left
        # for a chain's previous step to supply (checked in full when the job is stored).
        self._task.codec.encode_args(args, kwargs, partial=True)
        return Signature(self._task, args, dict(kwargs), self._call)

    def enqueue_many(
        self, signatures: Iterable[Signature[R]], *, connection: Any = None
    ) -> list[Job[R]]:
        """Store many jobs in one round trip (one transaction, or the caller's)."""
        return enqueueing.enqueue_signatures(self._task.app, list(signatures), connection)

    async def enqueue_many_async(
        self, signatures: Iterable[Signature[R]], *, connection: Any = None
    ) -> list[Job[R]]:
        return await enqueueing.enqueue_signatures_async(
            self._task.app, list(signatures), connection
        )

    def options(
        self,
        *,
        delay: Delay | None = None,
        run_at: datetime | float | None = None,
        priority: int | None = None,
        queue: str | None = None,
        key: str | None = None,
        owner: str | None = None,
        meta: Mapping[str, Any] | None = None,
        connection: Any = None,
        window: str | None = None,
        on_success: Signature[Any] | None = None,
        on_failure: Signature[Any] | None = None,
        on_cancel: Signature[Any] | None = None,
        notify: Sequence[Any] | None = None,
    ) -> BoundTask[P, R]:
        """Per-job options: ``task.options(delay=60, key="u42:a.docx").enqueue(...)``.

        ``connection``: enqueue inside this open database transaction (PostgreSQL).
        ``window``: start only within these daily hours, e.g. ``"01:00-05:00 Europe/Paris"``.
        ``on_success`` / ``on_failure`` (dead) / ``on_cancel``: a job (``other.s(...)``)
        stored in the same step as this one's end, whoever ends it, with this job's id as
        its first argument.
        ``notify=[Webhook("https://...", on="end")]``: tell someone when it ends, by a
        notice stored in the same step (see ``offload.notices``).
        """
        call = make_call_options(
            self._call, delay=delay, run_at=run_at, priority=priority, queue=queue,
            key=key, owner=owner, meta=meta,
        )  # fmt: skip
        if connection is not None:
            call = replace(call, connection=connection)
        if window is not None:
            call = replace(call, window=Window.parse(window))
        ends = {"on_success": on_success, "on_failure": on_failure, "on_cancel": on_cancel}
        for option, then in ends.items():
            if then is None:
                continue
            if not isinstance(then, Signature):
                raise ConfigurationError(f"{option} takes a task.s(...) signature, got {then!r}")
            if then.task.app is not self._task.app:
                raise ConfigurationError(f"{option}: {then.task!r} belongs to another app")
            then.task.codec.encode_args(("job-id", *then.args), then.kwargs)  # checked now
            kept = tuple(end for end in call.on_end if end[0] != option)  # the last one given wins
            call = replace(call, on_end=(*kept, (option, then, END_OPTIONS[option])))
        if notify is not None:
            if isinstance(notify, str) or not isinstance(notify, Sequence):
                raise ConfigurationError("notify takes a list, e.g. notify=[Webhook(url)]")
            kept = tuple(end for end in call.on_end if not end[0].startswith("notify:"))
            made = []
            for index, notice in enumerate(notify):
                as_follow_up = getattr(notice, "as_follow_up", None)
                if as_follow_up is None:
                    raise ConfigurationError(f"notify takes notices (Webhook(...)), got {notice!r}")
                made.append(as_follow_up(self._task.app, index))
            call = replace(call, on_end=(*kept, *made))
        return BoundTask(self._task, call)


class BoundTask(_Enqueuer[P, R]):
    def __init__(self, task: Task[P, R], call: CallOptions) -> None:
        self._task = task
        self._call = call


class Task(_Enqueuer[P, R]):
    """A registered function. Calling it runs it here; ``enqueue`` runs it in a worker."""

    def __init__(self, app: Offload, fn: Callable[P, Any], name: str, options: TaskOptions) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.defaults = options
        self.is_async = inspect.iscoroutinefunction(fn)
        # A micro-batched task's function takes a list; each job carries one item of it.
        self.codec = ArgsCodec(item_signature(fn, name) if options.batch else fn, name)
        self._task = self
        self._call = CallOptions()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.defaults.queue}>"

    def new_job(
        self,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        call: CallOptions,
        job_id: str | None = None,
    ) -> NewJob:
        payload = self.codec.encode_args(tuple(args), dict(kwargs))
        d = self.defaults
        delay_s, run_at, meta = bounds.delay_s(call.delay_s), call.run_at, dict(call.meta)
        if run_at is not None:
            run_at = bounds.timestamp_s(run_at)
        window = call.window or d.window
        if window is not None:  # wait as scheduled until the window opens, on the store's clock
            earliest = run_at if run_at is not None else self.app.store_now() + delay_s
            delay_s, run_at = 0.0, window.next_start(earliest)
            meta[WINDOW_META_KEY] = str(window)
        queue = call.queue or d.queue
        new = NewJob(
            id=job_id or self.app.new_id(),
            task=self.name,
            queue=queue,
            fair=queue in self.app.fair_queues,
            payload=payload,
            priority=d.priority if call.priority is None else call.priority,
            max_attempts=d.max_attempts,
            delay_s=delay_s,
            run_at=run_at,
            lease_s=d.lease_s,
            timeout_s=d.timeout_s,
            key=call.key,
            owner=call.owner,
            meta=meta,
        )
        if not call.on_end:
            return new
        ends = tuple(follow_up(new, option, then, states) for option, then, states in call.on_end)
        return replace_struct(new, follow_ups=ends)


class TaskDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


T = TypeVar("T")


class BatchDecorator(Protocol):
    """``@app.task(batch_size=...)``: a function of a list becomes a task of one item."""

    @overload
    def __call__(
        self, fn: Callable[[list[T]], Coroutine[Any, Any, Sequence[R]]], /
    ) -> Task[[T], R]: ...
    @overload
    def __call__(self, fn: Callable[[list[T]], Sequence[R]], /) -> Task[[T], R]: ...
