"""Plain data records that cross the backend seam.

They are msgspec structs so that backends can encode them cheaply and the
dashboard and CLI can print them as JSON without a second model.
"""

from __future__ import annotations

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
