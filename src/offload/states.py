"""The job states and the only transitions between them (the README's "States")."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED}
)
#: States in which a unique key is held: enqueueing the key again returns this job.
KEY_HOLDING_STATES: frozenset[JobState] = frozenset(
    {JobState.SCHEDULED, JobState.QUEUED, JobState.RUNNING}
)
#: States from which a person may cancel a job.
CANCELLABLE_STATES = KEY_HOLDING_STATES
#: States from which a person may retry a job.
RETRYABLE_STATES: frozenset[JobState] = frozenset({JobState.DEAD, JobState.CANCELLED})

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # A due scheduled job may be claimed directly: it passes through queued in the same step.
    JobState.SCHEDULED: frozenset({JobState.QUEUED, JobState.RUNNING, JobState.CANCELLED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset(
        {
            JobState.SUCCEEDED,
            JobState.SCHEDULED,  # error with attempts left: retried after a backoff
            JobState.DEAD,
            JobState.QUEUED,  # lease expired, or handed back at shutdown
            JobState.CANCELLED,
        }
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.DEAD: frozenset({JobState.QUEUED}),
    JobState.CANCELLED: frozenset({JobState.QUEUED}),
}


class InvalidTransition(ValueError):
    pass


def check_transition(source: JobState, target: JobState) -> None:
    """Raise unless ``source -> target`` is one of the allowed transitions."""
    if target not in TRANSITIONS[source]:
        raise InvalidTransition(f"a job cannot go from {source.value} to {target.value}")
