"""Plain data records that cross the backend seam.

They are msgspec structs so that backends can encode them cheaply and the
dashboard and CLI can print them as JSON without a second model.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from offload.states import JobState


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Why an attempt failed: what a person needs to fix it."""

    type: str
    message: str
    traceback: str | None = None


#: The error a job carries after its worker stopped renewing the lease.
WORKER_LOST = ErrorInfo(
    type="WorkerLost",
    message="the worker stopped renewing its lease (crash, kill or freeze)",
)


class AttemptOutcome(enum.StrEnum):
    """How one attempt ended, as a person reads it on the job's page."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the task raised or timed out (retried or dead, the job's state says)
    LOST = "lost"  # the worker stopped renewing its lease (crash, kill, freeze)
    CANCELLED = "cancelled"  # a person cancelled the job while it ran
    RELEASED = "released"  # handed back at shutdown, attempt not counted
    DEFERRED = "deferred"  # a limit said "not yet", attempt not counted


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One run of a job, kept on the job (newest last) for its history page."""

    number: int
    worker: str | None = None
    started_at: float | None = None
    ended_at: float = 0.0
    outcome: AttemptOutcome = AttemptOutcome.FAILED
    error: ErrorInfo | None = None


#: A job keeps its last attempts only: a job deferred by a limit all day stays small.
MAX_ATTEMPTS_KEPT = 100


class JobRecord(msgspec.Struct, kw_only=True):
    """One stored job, as a backend returns it.

    Times are seconds since the epoch on the backend's clock. ``payload`` and
    ``result`` are raw JSON so that a job whose payload cannot be decoded can
    still be stored, listed and dead-lettered.
    """

    id: str
    task: str
    queue: str
    state: JobState
    payload: bytes
    priority: int = 0
    attempt: int = 0
    max_attempts: int = 1
    delivery: int = 0  # fencing token: incremented on every claim, never reused
    crashes: int = 0
    run_at: float = 0.0
    lease_until: float | None = None
    lease_s: float | None = None
    timeout_s: float | None = None
    worker: str | None = None
    progress: float = 0.0
    progress_message: str | None = None
    result: bytes | None = None
    error: ErrorInfo | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    key: str | None = None
    batch: str | None = None
    owner: str | None = None
    meta: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Every ended attempt, oldest first (at most ``MAX_ATTEMPTS_KEPT``).
    attempts: list[Attempt] = msgspec.field(default_factory=list)
    #: What the store could not decode in this row (written by another version or by hand),
    #: None when it all decoded. A worker dead-letters such a job rather than running it.
    unreadable: str | None = None


#: The gap between one owner's consecutive turns in a fair queue (see ``NewJob.fair``).
FAIR_STEP_S = 1e-6


class NewJob(msgspec.Struct, frozen=True, kw_only=True):
    """A job to store: ``run_at`` is absolute, else ``delay_s`` counts from the backend's now."""

    id: str
    task: str
    queue: str
    payload: bytes
    priority: int = 0
    max_attempts: int = 1
    delay_s: float = 0.0
    run_at: float | None = None
    lease_s: float | None = None
    timeout_s: float | None = None
    key: str | None = None
    batch: str | None = None
    owner: str | None = None
    meta: dict[str, Any] = msgspec.field(default_factory=dict)
    fair: bool = False  # the store gives a job due now its owner's turn in run_at
    #: Jobs stored when this one ends, in the same atomic step (see ``FollowUp``).
    follow_ups: tuple[FollowUp, ...] = ()


class FollowUp(msgspec.Struct, frozen=True, kw_only=True):
    """A job its parent asks for when it ends in one of ``on`` (final states).

    The store inserts ``job`` in the same atomic step as the parent's final state,
    whoever makes it final: its worker's fenced finish, the reaper after crashes, a
    person's cancel. A step that is refused stores nothing; a follow-up whose id is
    already stored is skipped, so a parent retried by a person and ending again does
    not store it twice.
    """

    on: tuple[JobState, ...]
    job: NewJob


class BatchOpen(msgspec.Struct, frozen=True, kw_only=True):
    """A batch opened in the same step as its members (the jobs of the call with
    ``batch == id``): the store counts them down as they end, and stores ``callback``
    in the step that ends the last one."""

    id: str
    callback: NewJob | None = None


class BatchRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A batch as the store keeps it: members still to end, and when the last one did."""

    id: str
    total: int
    remaining: int
    created_at: float
    completed_at: float | None = None
    callback_id: str | None = None


#: Upper bounds (ms) of the wait- and run-time histogram buckets; one more bucket holds
#: everything above the last bound.
DURATION_BUCKETS_MS: tuple[int, ...] = (
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000,
    300_000, 900_000, 3_600_000,
)  # fmt: skip


#: How long the store keeps its own per-minute enqueue counts where it must give them a
#: lifetime when it writes them; ``PruneParams.counts_before`` prunes sooner.
ENQUEUE_COUNTS_TTL_S = 8 * 24 * 3600.0


class MinuteCounts(msgspec.Struct, frozen=True, kw_only=True):
    """What happened to one task's jobs on one queue in one minute, as one source saw it.

    A worker is a source (it owns its rows: each write replaces the row); the store
    itself is the source ``"enqueue"`` of the ``enqueued`` counts, added in each
    enqueue step. Readers sum the sources and merge the histograms.
    """

    minute: int  # seconds since the epoch // 60
    queue: str
    task: str
    source: str
    enqueued: int = 0
    started: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    #: Jobs per bucket of ``DURATION_BUCKETS_MS`` (one more for above): time from due
    #: to started, and from started to ended.
    wait_ms: list[int] = msgspec.field(default_factory=list)
    run_ms: list[int] = msgspec.field(default_factory=list)


class EventKind(enum.StrEnum):
    """What happened to a job (or a queue), as live subscribers are told."""

    ENQUEUED = "enqueued"  # stored (a follow-up or a person's retry included)
    STARTED = "started"  # claimed by a worker
    PROGRESS = "progress"
    RETRYING = "retrying"  # failed with attempts left: scheduled again after a backoff
    REQUEUED = "requeued"  # back in its queue: handed back, deferred, or its worker was lost
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"
    DELETED = "deleted"
    BATCH_PROGRESS = "batch_progress"  # a member of ``batch`` reached a final state
    QUEUE_PAUSED = "queue_paused"
    QUEUE_RESUMED = "queue_resumed"


#: What a worker needs to hear: a person stopped a job, or a queue's claims changed. Rare,
#: so a store may send them always, where the full stream costs only while listened to.
CONTROL_KINDS: frozenset[EventKind] = frozenset(
    {EventKind.CANCELLED, EventKind.DELETED, EventKind.QUEUE_PAUSED, EventKind.QUEUE_RESUMED}
)


class JobEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One change, pushed by the store to every subscriber (best effort).

    It carries what a subscriber filters on (job, owner, batch, queue) and what a page
    shows at once (state, attempt, progress); the full job is a ``get`` away.
    """

    kind: EventKind
    id: str = ""  # empty for queue events
    queue: str = ""
    state: JobState | None = None
    task: str = ""
    owner: str | None = None
    batch: str | None = None
    attempt: int = 0
    progress: float = 0.0
    #: The progress message, or the error's message for retrying and dead.
    message: str | None = None
    worker: str | None = None
    at: float = 0.0  # the store's clock
    #: True for the state a subscriber is sent first (where things stand), not a change.
    current: bool = False


class WorkerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A live worker, as the registry shows it; ``last_seen`` is set by the store."""

    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: float
    last_seen: float = 0.0
    #: Ids of the jobs it runs now.
    running: list[str] = msgspec.field(default_factory=list)
