"""The storage seam's params and results: one frozen struct per verb's input or answer.

Kept apart from the verbs (``base``) so that reading what a verb takes does not mean
reading the protocol, and the other way round; ``base`` re-exports every name.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import msgspec

from offload.records import (
    BatchOpen,
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
    #: Tasks whose arguments ``text`` never looks at: they keep secrets, and a search that
    #: matched them would spell a secret out one guessed character at a time.
    text_skips: Sequence[str] = ()
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
    #: Pages run oldest first instead (the cursor then pages upwards).
    oldest_first: bool = False


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
