"""The one storage seam: job-lifecycle verbs, one frozen params object each.

The core does the bookkeeping (which state comes next, backoff, events); a
backend only performs the atomic step. Everything above this module is
written once for every engine, and asks ``backend.capabilities`` instead of
checking a backend's type.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import msgspec

from offload.records import (
    BatchOpen,
    BatchRecord,
    ErrorInfo,
    EventKind,
    JobEvent,
    JobRecord,
    MinuteCounts,
    NewJob,
    WorkerInfo,
)
from offload.states import JobState


class Capabilities(msgspec.Struct, frozen=True, kw_only=True):
    #: ``wait`` is woken by the engine itself (LISTEN/NOTIFY, blocking pop) rather than a poll.
    push_wakeups: bool = False
    #: Several processes (and machines) may share the store.
    shared_between_processes: bool = True
    #: ``enqueue`` may join a caller's open database transaction.
    transactional_enqueue: bool = False
    #: A ``claim`` cancelled midway hands back what it took (its reply may never come), so
    #: a stopping worker need not wait on it: a silent connection holds it for its timeout.
    abandonable_claims: bool = False


class EnqueueParams(msgspec.Struct, frozen=True, kw_only=True):
    jobs: Sequence[NewJob]
    #: Open this batch in the same step; its members are the jobs with ``batch == id``.
    batch: BatchOpen | None = None


class ClaimParams(msgspec.Struct, frozen=True, kw_only=True):
    queues: Sequence[str]
    limit: int
    worker: str
    lease_s: float  # used for jobs whose own ``lease_s`` is unset


class LeaseRef(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    delivery: int


class HeartbeatParams(msgspec.Struct, frozen=True, kw_only=True):
    leases: Sequence[LeaseRef]
    worker: str
    lease_s: float


class HeartbeatResult(msgspec.Struct, frozen=True, kw_only=True):
    #: Leases this worker no longer holds: the job was cancelled, reaped or finished elsewhere.
    lost: list[str]


class OutcomeKind(enum.StrEnum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"  # back to scheduled after ``retry_delay_s``
    DEAD = "dead"
    CANCELLED = "cancelled"
    RELEASE = "release"  # handed back at shutdown: queued again, attempt not counted
    #: A limit said "not yet": scheduled after ``retry_delay_s``, attempt not counted.
    DEFER = "defer"


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    delivery: int
    kind: OutcomeKind
    result: bytes | None = None
    error: ErrorInfo | None = None
    retry_delay_s: float = 0.0
    #: Replaces the job's ``meta`` when set (a deferral notes why the job waits).
    meta: dict[str, Any] | None = None
    #: Jobs stored in the same atomic step as this outcome, and only if the store takes
    #: it (the lease still held): a chain's next step. A follow-up whose id is already
    #: stored is skipped, so a repeated step never stores it twice.
    follow_ups: Sequence[NewJob] = ()


class FinishParams(msgspec.Struct, frozen=True, kw_only=True):
    outcomes: Sequence[Outcome]


class FinishResult(msgspec.Struct, frozen=True, kw_only=True):
    #: Outcomes refused because the worker no longer held the lease (fencing).
    rejected: list[str]


class ProgressUpdate(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    delivery: int
    progress: float
    message: str | None = None


class ProgressParams(msgspec.Struct, frozen=True, kw_only=True):
    updates: Sequence[ProgressUpdate]


class IdsParams(msgspec.Struct, frozen=True, kw_only=True):
    ids: Sequence[str]


class JobFilter(msgspec.Struct, frozen=True, kw_only=True):
    states: Sequence[JobState] = ()
    queue: str | None = None
    task: str | None = None
    owner: str | None = None
    batch: str | None = None
    #: Case-insensitive substring of the id, task, owner or arguments (``payload``).
    text: str | None = None
    #: ``created_at`` within [created_after, created_before), on the store's clock.
    created_after: float | None = None
    created_before: float | None = None


class CountParams(msgspec.Struct, frozen=True, kw_only=True):
    filter: JobFilter = JobFilter()


class QueryParams(msgspec.Struct, frozen=True, kw_only=True):
    filter: JobFilter = JobFilter()
    #: Id of the last job of the previous page; pages run newest first.
    cursor: str | None = None
    limit: int = 50


class Page(msgspec.Struct, frozen=True, kw_only=True):
    jobs: list[JobRecord]
    next_cursor: str | None


class QueueStats(msgspec.Struct, frozen=True, kw_only=True):
    queue: str
    counts: dict[str, int]
    #: Age in seconds of the oldest ready job, a measure of how far behind workers are.
    oldest_ready_age_s: float | None
    finished_last_minute: int


class ReapParams(msgspec.Struct, frozen=True, kw_only=True):
    #: A job whose lease has run out this many times is dead (a poison job never loops forever).
    max_crashes: int = 3


class ReapedJob(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    state: JobState


class PruneParams(msgspec.Struct, frozen=True, kw_only=True):
    finished_before: float  # absolute time on the backend's clock; completed batches too
    states: Sequence[JobState] = (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED)
    #: Per-minute count rows of minutes before this time go too (None: only expired ones).
    counts_before: float | None = None


class PurgeParams(msgspec.Struct, frozen=True, kw_only=True):
    states: Sequence[JobState]
    queue: str | None = None


class WaitParams(msgspec.Struct, frozen=True, kw_only=True):
    queues: Sequence[str]
    timeout_s: float
    #: The claim the caller makes next. A store that can run it the moment it wakes, in
    #: the same round trip (Redis), does and returns the jobs; the others return None.
    claim: ClaimParams | None = None


class LockParams(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    owner: str
    ttl_s: float


class MarkNamesParams(msgspec.Struct, frozen=True, kw_only=True):
    names: Sequence[str]


class MarkParams(msgspec.Struct, frozen=True, kw_only=True):
    """A small named value that leader services keep in the store (a cron schedule's last
    due time), written with compare-and-set so that two leaders cannot both advance it."""

    name: str
    value: str
    #: The value the caller read before; None means the mark must not exist yet.
    expected: str | None = None
    #: The mark is deleted this long after it is written (None: kept until overwritten).
    #: Everything the engine writes needs a lifetime, marks included.
    ttl_s: float | None = None


class BatchQueryParams(msgspec.Struct, frozen=True, kw_only=True):
    ids: Sequence[str] = ()  # these batches (any state); empty: every batch, newest first
    open_only: bool = False  # only batches whose last member has not ended
    limit: int = 100


class CountsParams(msgspec.Struct, frozen=True, kw_only=True):
    """A source's rows, each replacing its earlier row for the same minute, queue and task."""

    rows: Sequence[MinuteCounts]
    #: Rows are kept this long (stores with lifetimes set it at write; others prune).
    ttl_s: float


class CountsQuery(msgspec.Struct, frozen=True, kw_only=True):
    since_minute: int
    until_minute: int  # inclusive
    queue: str | None = None
    task: str | None = None


class SubscribeParams(msgspec.Struct, frozen=True, kw_only=True):
    #: Only these kinds (empty: every kind). A store may serve ``CONTROL_KINDS`` alone from a
    #: cheaper stream (workers listen for those only).
    kinds: frozenset[EventKind] = frozenset()


#: Every event.
ALL_EVENTS = SubscribeParams()


class PublishParams(msgspec.Struct, frozen=True, kw_only=True):
    """Events no job transition carries (a queue paused or resumed), pushed as-is."""

    events: Sequence[JobEvent]


class WorkerBeatParams(msgspec.Struct, frozen=True, kw_only=True):
    """A worker says it is alive; it drops out of the registry ``ttl_s`` after its last beat."""

    worker: WorkerInfo
    ttl_s: float


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
