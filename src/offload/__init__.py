"""offload: asynchronous jobs that are never lost."""

from offload.app import Offload
from offload.context import JobContext, current_job
from offload.errors import (
    Abort,
    ConfigurationError,
    InvalidArguments,
    JobCancelled,
    JobFailed,
    JobNotFound,
    OffloadError,
    Retry,
)
from offload.job import Job, Progress
from offload.limits import ConcurrencyLimit, RateLimit
from offload.records import ErrorInfo, JobRecord
from offload.retry import BackoffPolicy, ExponentialBackoff, FixedBackoff
from offload.states import JobState
from offload.task import Signature, Task

__all__ = [
    "Abort",
    "BackoffPolicy",
    "ConcurrencyLimit",
    "ConfigurationError",
    "ErrorInfo",
    "ExponentialBackoff",
    "FixedBackoff",
    "InvalidArguments",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobNotFound",
    "JobRecord",
    "JobState",
    "Offload",
    "OffloadError",
    "Progress",
    "RateLimit",
    "Retry",
    "Signature",
    "Task",
    "current_job",
]
