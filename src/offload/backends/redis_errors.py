"""redis-py's errors, translated at the store's boundary into the seam's."""

from __future__ import annotations

import redis.exceptions

from offload.backends.base import BackendError

TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def detail(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def unreachable(exc: BaseException) -> BackendError:
    return BackendError(
        f"cannot connect to Redis ({detail(exc)}); check the URL (--url or OFFLOAD_URL) "
        "and that the server is running"
    )


def translate(exc: BaseException) -> BaseException:
    if isinstance(exc, redis.exceptions.ResponseError):
        message = str(exc)
        if "OFFLOAD_DUPLICATE" in message:
            return ValueError(message.split("OFFLOAD_DUPLICATE", 1)[1].strip().split("\n")[0])
        if message.startswith("OOM"):
            return BackendError(
                "Redis is out of memory (maxmemory reached) and refused to store more; "
                "raise maxmemory or prune finished jobs sooner"
            )
        return BackendError(f"Redis refused the operation: {detail(exc)}")
    if isinstance(exc, TRANSIENT):
        return BackendError(f"Redis is unavailable: {detail(exc)}")
    return exc
