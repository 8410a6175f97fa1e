"""What a task declares (``TaskOptions``) and what one call changes (``CallOptions``),
checked where they are written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from offload import bounds
from offload.bounds import check_owner, check_queue_name
from offload.errors import ConfigurationError
from offload.limits import Limit
from offload.microbatch import BatchSettings
from offload.retry import BackoffPolicy
from offload.states import JobState
from offload.windows import Window

if TYPE_CHECKING:
    from offload.task import Signature

Delay = float | int | timedelta


@dataclass(frozen=True)
class TaskOptions:
    queue: str
    priority: int
    max_attempts: int
    backoff: BackoffPolicy
    timeout_s: float | None
    lease_s: float | None
    retry_on: tuple[type[BaseException], ...]
    window: Window | None = None
    limits: tuple[Limit, ...] = ()
    #: Micro-batching: a worker hands up to ``batch.size`` jobs to one call.
    batch: BatchSettings | None = None
    #: Clients may start it over the HTTP API.
    public: bool = False
    #: Parameters whose values never show (API, CLI, notices), and whether the result does.
    secret: tuple[str, ...] = ()
    secret_result: bool = False


@dataclass(frozen=True)
class CallOptions:
    """Per-job choices that override the task's defaults."""

    delay_s: float = 0.0
    run_at: float | None = None
    priority: int | None = None
    queue: str | None = None
    key: str | None = None
    owner: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    #: A caller's open database connection whose transaction the job joins.
    connection: Any = None
    #: Daily hours this job may start in (overrides the task's).
    window: Window | None = None
    #: (option name, signature, final states): jobs stored when this one ends in one of
    #: those states (``END_OPTIONS``, and each notice's own).
    on_end: tuple[tuple[str, Signature[Any], tuple[JobState, ...]], ...] = ()


def _seconds(delay: Delay) -> float:
    return bounds.delay_s(delay.total_seconds() if isinstance(delay, timedelta) else delay)


def make_call_options(
    base: CallOptions,
    *,
    delay: Delay | None,
    run_at: datetime | float | None,
    priority: int | None,
    queue: str | None,
    key: str | None,
    owner: str | None,
    meta: Mapping[str, Any] | None,
) -> CallOptions:
    if delay is not None and run_at is not None:
        raise ConfigurationError("give either delay or run_at, not both")
    changes: dict[str, Any] = {}
    if delay is not None:
        changes["delay_s"] = _seconds(delay)
        changes["run_at"] = None
    if run_at is not None:
        if isinstance(run_at, datetime):
            if run_at.tzinfo is None:
                raise ConfigurationError("run_at must be timezone-aware (e.g. datetime.now(UTC))")
            changes["run_at"] = bounds.timestamp_s(run_at.timestamp())
        else:
            changes["run_at"] = bounds.timestamp_s(run_at)
        changes["delay_s"] = 0.0
    if priority is not None:
        changes["priority"] = bounds.priority(priority)
    if queue is not None:
        changes["queue"] = check_queue_name(queue)
    if key is not None:
        if not isinstance(key, str) or not key:
            raise ConfigurationError("key must be a non-empty string")
        changes["key"] = key
    if owner is not None:
        changes["owner"] = check_owner(owner)
    if meta is not None:
        changes["meta"] = dict(meta)
    return replace(base, **changes)
