"""PostgreSQL's driver errors, translated at the store's boundary."""

from __future__ import annotations

import psycopg
import psycopg_pool

from offload.backends.base import BackendError

_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout, OSError)


def _unreachable(exc: BaseException) -> BackendError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return BackendError(
        f"cannot connect to PostgreSQL ({detail}); check the URL (--url or OFFLOAD_URL) "
        "and that the server is running"
    )


def _fail(exc: BaseException) -> BackendError:
    return BackendError(f"PostgreSQL is unavailable or refused the operation: {exc}".strip())


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return ValueError(f"a job with this id already exists: {exc}")
    if isinstance(exc, _TRANSIENT):
        return _fail(exc)
    return exc
