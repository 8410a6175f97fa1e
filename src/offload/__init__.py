"""offload: asynchronous jobs that are never lost."""

from offload.app import Offload
from offload.backends.base import BackendError, DuplicateJob, ValueRejected
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
    "BackendError",
    "BackoffPolicy",
    "ConcurrencyLimit",
    "ConfigurationError",
    "DuplicateJob",
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
    "ValueRejected",
    "current_job",
]
