"""Exceptions of the public API; each message says what to do about it."""

from __future__ import annotations

from offload.records import ErrorInfo


class OffloadError(Exception):
    pass


class ConfigurationError(OffloadError, ValueError):
    """A task, option or URL is wrong; raised where it is written, not later in a worker."""


class InvalidArguments(OffloadError, TypeError):
    """The arguments given to ``enqueue`` do not fit the task's signature or type hints."""


class JobNotFound(OffloadError, LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r} (it may have been pruned after its retention)")
        self.job_id = job_id


class BatchNotFound(OffloadError, LookupError):
    def __init__(self, batch_id: str) -> None:
        super().__init__(
            f"no batch with id {batch_id!r} (it may have been pruned after its retention)"
        )
        self.batch_id = batch_id


class JobFailed(OffloadError):
    """The job ended in ``dead``: its last error is attached."""

    def __init__(self, job_id: str, error: ErrorInfo | None) -> None:
        detail = f"{error.type}: {error.message}" if error else "no error recorded"
        super().__init__(f"job {job_id} failed: {detail}")
        self.job_id = job_id
        self.error = error


class JobCancelled(OffloadError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} was cancelled")
        self.job_id = job_id


class Retry(Exception):
    """Raise inside a task to ask for another attempt, optionally after ``delay_s``."""

    def __init__(self, reason: str = "retry requested", *, delay_s: float | None = None) -> None:
        super().__init__(reason)
        self.delay_s = delay_s


class Abort(Exception):
    """Raise inside a task to fail the job at once, without the remaining retries."""


class InvalidQuery(OffloadError, ValueError):
    """A filter, cursor or action given to the management API cannot be used as written."""


class CountChanged(OffloadError):
    """A bulk action's filter now matches more jobs than the caller saw: nothing was done."""

    def __init__(self, expected: int, found: int) -> None:
        super().__init__(
            f"the filter now matches {found} job(s), more than the {expected} you saw; "
            "count again and confirm the new number"
        )
        self.expected = expected
        self.found = found
