"""redis-py's errors, translated at the store's boundary into the seam's."""

from __future__ import annotations

import redis.exceptions

from offload.backends.base import BackendError, DuplicateJob, ValueRejected

TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def detail(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def unreachable(exc: BaseException) -> BackendError:
    return BackendError(
        f"cannot connect to Redis ({detail(exc)}); check the URL (--url or OFFLOAD_URL) "
        "and that the server is running"
    )


def _tagged(message: str, tag: str) -> str:
    return message.split(tag, 1)[1].strip().split("\n")[0]


#: A command or script that met data it cannot use: a key of another type, a field that is
#: not a number (written by hand or by another tool). Retrying does not help: not an outage.
_DATA_ERRORS = (
    "WRONGTYPE", "user_script:", "is not an integer", "is not a valid float", "would overflow",
    "produce NaN",
)  # fmt: skip


def _bad_data(message: str) -> ValueRejected | None:
    if not any(m in message for m in _DATA_ERRORS):
        return None
    what = message.split(" script: ", 1)[0].strip()  # scripts name the key (prelude.lua)
    return ValueRejected(
        f"Redis holds data offload cannot use (a key written by hand or by another tool?): {what}"
    )


def translate(exc: BaseException) -> BaseException:
    """Every redis-py or encoding error as the seam's: an outage is a BackendError, a
    value the store cannot hold a ValueRejected, an id already stored a DuplicateJob."""
    if isinstance(exc, BackendError | ValueRejected | DuplicateJob):
        return exc
    if isinstance(exc, redis.exceptions.ResponseError):
        message = str(exc)
        if "OFFLOAD_DUPLICATE" in message:
            return DuplicateJob(_tagged(message, "OFFLOAD_DUPLICATE"))
        if "OFFLOAD_REJECTED" in message:  # a script's own check, before its first write
            return ValueRejected(_tagged(message, "OFFLOAD_REJECTED"))
        bad_data = _bad_data(message)
        if bad_data is not None:
            return bad_data
        if message.startswith("OOM"):
            return BackendError(
                "Redis is out of memory (maxmemory reached) and refused to store more; "
                "raise maxmemory or prune finished jobs sooner"
            )
        return BackendError(f"Redis refused the operation: {detail(exc)}")
    if isinstance(exc, TRANSIENT):
        return BackendError(f"Redis is unavailable: {detail(exc)}")
    if isinstance(exc, UnicodeError | redis.exceptions.DataError):
        return ValueRejected(f"Redis cannot store a value of this call: {detail(exc)}")
    if isinstance(exc, redis.exceptions.RedisError):
        return BackendError(f"Redis failed: {detail(exc)}")
    return exc
