"""The one storage seam: job-lifecycle verbs, one frozen params object each.

The core does the bookkeeping (which state comes next, backoff, events); a
backend only performs the atomic step. Everything above this module is
written once for every engine, and asks ``backend.capabilities`` instead of
checking a backend's type.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from offload.backends.params import (
    ALL_EVENTS,
    BatchQueryParams,
    Capabilities,
    ClaimParams,
    CountParams,
    CountsParams,
    CountsQuery,
    EnqueueParams,
    FinishParams,
    FinishResult,
    HeartbeatParams,
    HeartbeatResult,
    IdsParams,
    JobFilter,
    LeaseRef,
    LockParams,
    MarkNamesParams,
    MarkParams,
    Outcome,
    OutcomeKind,
    Page,
    ProgressParams,
    ProgressUpdate,
    PruneParams,
    PublishParams,
    PurgeParams,
    QueryParams,
    QueueStats,
    ReapedJob,
    ReapParams,
    SubscribeParams,
    WaitParams,
    WorkerBeatParams,
)
from offload.records import (
    BatchRecord,
    JobEvent,
    JobRecord,
    MinuteCounts,
    WorkerInfo,
)


class EventStream(Protocol):
    """The store's pushed events, from the moment the stream is entered.

    Entering returns once the subscription is live, so a caller that reads the current
    state after entering misses no change (it may see one twice). Iterating yields the
    events of one store step (a finish of many jobs) at a time. A lost connection ends
    the iteration with ``BackendError``: the caller subscribes again and re-reads state.
    """

    async def __aenter__(self) -> EventStream: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def __aiter__(self) -> AsyncIterator[list[JobEvent]]: ...


class BackendError(RuntimeError):
    """The engine cannot be reached or refused an operation; the message says how to fix it."""


class StoreRefused(BackendError):
    """The engine answers but is set up so that offload must not use it (an evicting Redis,
    a newer schema). Retrying cannot help: a worker stops with the message instead."""


class DuplicateJob(ValueError):
    """A job id in the call is already stored (ids are unique forever); nothing was stored."""

    def __init__(self, message: str = "a job id in this batch already exists; nothing was "
                 "stored") -> None:  # fmt: skip
        super().__init__(message)


class ValueRejected(ValueError):
    """The store cannot hold a value the call carries (text it cannot encode, a time out of
    its range). It is the caller's input, not an outage: the same call can never succeed,
    so it must fail the one job or call that carries it, never be retried as a whole."""


class SyncBackend(Protocol):
    """Blocking client operations, for sync callers (Flask, Django, scripts).

    A sync call never builds an event loop: SQLite and memory answer directly,
    network engines go through one long-lived loop thread per backend.
    """

    def enqueue(self, params: EnqueueParams) -> list[JobRecord]: ...
    def get(self, params: IdsParams) -> list[JobRecord]: ...
    def query(self, params: QueryParams) -> Page: ...
    def cancel(self, params: IdsParams) -> list[JobRecord]: ...
    def retry(self, params: IdsParams) -> list[JobRecord]: ...
    def stats(self) -> list[QueueStats]: ...
    def purge(self, params: PurgeParams) -> int: ...
    def count(self, params: CountParams) -> int: ...
    def delete(self, params: IdsParams) -> list[str]: ...
    def publish(self, params: PublishParams) -> None: ...
    def workers(self) -> list[WorkerInfo]: ...
    def batches(self, params: BatchQueryParams) -> list[BatchRecord]: ...
    def record_counts(self, params: CountsParams) -> None: ...
    def read_counts(self, params: CountsQuery) -> list[MinuteCounts]: ...
    def get_marks(self, params: MarkNamesParams) -> dict[str, str]: ...
    def set_mark(self, params: MarkParams) -> bool: ...
    def now(self) -> float: ...

    def migrate(self) -> int:
        """Create or upgrade the store's schema; returns its version."""
        ...


class TransactionalSync(SyncBackend, Protocol):
    """``capabilities.transactional_enqueue``: enqueue on the caller's open connection."""

    def enqueue_in(self, connection: Any, params: EnqueueParams) -> list[JobRecord]: ...


class TransactionalBackend(Protocol):
    async def enqueue_in(self, connection: Any, params: EnqueueParams) -> list[JobRecord]: ...


@runtime_checkable
class Backend(Protocol):
    """The asynchronous operations, all batch-shaped (see docs/architecture.md, "The seam")."""

    capabilities: Capabilities

    @property
    def blocking(self) -> SyncBackend: ...

    async def enqueue(self, params: EnqueueParams) -> list[JobRecord]:
        """Store jobs atomically, durable on return; a held unique key returns the existing job."""
        ...

    async def claim(self, params: ClaimParams) -> list[JobRecord]:
        """Lease up to ``limit`` ready jobs, highest priority then oldest."""
        ...

    async def heartbeat(self, params: HeartbeatParams) -> HeartbeatResult: ...
    async def finish(self, params: FinishParams) -> FinishResult: ...
    async def report_progress(self, params: ProgressParams) -> None: ...
    async def cancel(self, params: IdsParams) -> list[JobRecord]: ...
    async def retry(self, params: IdsParams) -> list[JobRecord]: ...
    async def get(self, params: IdsParams) -> list[JobRecord]: ...
    async def query(self, params: QueryParams) -> Page: ...
    async def stats(self) -> list[QueueStats]: ...
    async def promote_due(self) -> int: ...
    async def reap_expired(self, params: ReapParams) -> list[ReapedJob]: ...
    async def prune(self, params: PruneParams) -> int:
        """Forget finished jobs, and events and registry entries past their lifetime."""
        ...

    async def purge(self, params: PurgeParams) -> int: ...

    async def count(self, params: CountParams) -> int:
        """How many jobs match ``params.filter`` (what a bulk action would touch)."""
        ...

    async def delete(self, params: IdsParams) -> list[str]:
        """Forget the given jobs unless running (cancel those first); returns the ids gone."""
        ...

    def subscribe(self, params: SubscribeParams = ALL_EVENTS) -> EventStream:
        """Every store step's events of ``params.kinds``, pushed by the engine (see
        ``EventStream``); a step with none of them yields nothing."""
        ...

    async def publish(self, params: PublishParams) -> None: ...

    async def beat_worker(self, params: WorkerBeatParams) -> None:
        """Add or refresh a worker in the registry (the store sets ``last_seen``)."""
        ...

    async def remove_worker(self, params: IdsParams) -> None: ...

    async def workers(self) -> list[WorkerInfo]:
        """The workers seen within their ``ttl_s``."""
        ...

    async def batches(self, params: BatchQueryParams) -> list[BatchRecord]: ...

    async def record_counts(self, params: CountsParams) -> None:
        """Store a source's per-minute rows (each replaces the same key's earlier row)."""
        ...

    async def read_counts(self, params: CountsQuery) -> list[MinuteCounts]:
        """Every source's rows for the minutes asked (enqueue rows included)."""
        ...

    async def wait(self, params: WaitParams) -> list[JobRecord] | None:
        """Return when work may be ready on ``queues``, or after ``timeout_s``; with the
        jobs of ``params.claim`` (maybe none) if the store claimed on waking, else None."""
        ...

    async def lock(self, params: LockParams) -> bool:
        """Take or renew a lease-based lock; False while another owner holds it."""
        ...

    async def unlock(self, params: LockParams) -> None: ...

    async def get_marks(self, params: MarkNamesParams) -> dict[str, str]:
        """The marks that exist among ``names``."""
        ...

    async def set_mark(self, params: MarkParams) -> bool:
        """Store ``value`` if the mark still holds ``expected``; False if it does not."""
        ...

    async def now(self) -> float: ...
    async def close(self) -> None: ...


#: The seam: the verbs above and every params struct (``params``), from one place.
__all__ = [
    "ALL_EVENTS",
    "Backend",
    "BackendError",
    "BatchQueryParams",
    "Capabilities",
    "ClaimParams",
    "CountParams",
    "CountsParams",
    "CountsQuery",
    "DuplicateJob",
    "EnqueueParams",
    "EventStream",
    "FinishParams",
    "FinishResult",
    "HeartbeatParams",
    "HeartbeatResult",
    "IdsParams",
    "JobFilter",
    "LeaseRef",
    "LockParams",
    "MarkNamesParams",
    "MarkParams",
    "Outcome",
    "OutcomeKind",
    "Page",
    "ProgressParams",
    "ProgressUpdate",
    "PruneParams",
    "PublishParams",
    "PurgeParams",
    "QueryParams",
    "QueueStats",
    "ReapParams",
    "ReapedJob",
    "StoreRefused",
    "SubscribeParams",
    "SyncBackend",
    "TransactionalBackend",
    "TransactionalSync",
    "ValueRejected",
    "WaitParams",
    "WorkerBeatParams",
]
