"""PostgreSQL's driver errors, translated at the store's boundary.

An id already stored is ``DuplicateJob``; a value PostgreSQL cannot hold (NUL in
text, a time or number out of range, text that is not Unicode) is ``ValueRejected``:
the same call can never succeed. A server that cannot be reached is ``BackendError``.
"""

from __future__ import annotations

from typing import NoReturn

import psycopg
import psycopg_pool

from offload.backends.base import BackendError, DuplicateJob, ValueRejected

_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout, OSError)
#: Values the server (or the driver, before sending) refuses: the call's input, not an outage.
_REJECTED = (
    psycopg.DataError,
    psycopg.errors.ProgramLimitExceeded,  # a key too long for its index
    UnicodeEncodeError,
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unreachable(exc: BaseException) -> BackendError:
    return BackendError(
        f"cannot connect to PostgreSQL ({_first_line(exc)}); check the URL (--url or "
        "OFFLOAD_URL) and that the server is running"
    )


def _fail(exc: BaseException) -> BackendError:
    return BackendError(f"PostgreSQL is unavailable or refused the operation: {exc}".strip())


def translate(exc: BaseException) -> BaseException:
    """The seam's error for a driver error (``exc`` itself when it is not the driver's)."""
    if isinstance(exc, psycopg.errors.UniqueViolation):
        if (exc.diag.constraint_name or "").endswith("jobs_pkey"):
            return DuplicateJob()
        return _fail(exc)  # a race on another unique index: the next attempt settles it
    if isinstance(exc, _REJECTED):
        return ValueRejected(f"PostgreSQL cannot hold a value of this call: {_first_line(exc)}")
    if isinstance(exc, (*_TRANSIENT, psycopg.Error)):
        # Every other refusal names no value of the call: a server gone read-only in a
        # failover, a shutdown, a serialization failure. The call may succeed later.
        return _fail(exc)
    return exc


def reraise(exc: Exception) -> NoReturn:
    """Raise the seam's error for ``exc`` (``exc`` itself when it already is one)."""
    translated = translate(exc)
    if translated is exc:
        raise exc
    raise translated from exc
