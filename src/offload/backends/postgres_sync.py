"""The runners that drive plans on a cursor, and the blocking PostgreSQL client."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import psycopg_pool

from offload.backends.base import (
    BatchQueryParams,
    Capabilities,
    CountParams,
    CountsParams,
    CountsQuery,
    EnqueueParams,
    IdsParams,
    MarkNamesParams,
    MarkParams,
    Page,
    PublishParams,
    PurgeParams,
    QueryParams,
    QueueStats,
)
from offload.backends.postgres_admin import (
    plan_count,
    plan_delete,
    plan_publish,
    plan_query,
    plan_workers,
)
from offload.backends.postgres_deadline import SilentConnection, Watchdog
from offload.backends.postgres_endings import plan_batches, plan_read_counts, plan_record_counts
from offload.backends.postgres_enqueue import enqueue_is_atomic_alone, plan_enqueue
from offload.backends.postgres_errors import _unreachable, reraise
from offload.backends.postgres_plans import (
    Plan,
    Statements,
    migration_scripts,
    plan_cancel,
    plan_get,
    plan_get_marks,
    plan_migrate,
    plan_now,
    plan_purge,
    plan_retry,
    plan_set_mark,
    plan_stats,
)
from offload.backends.postgres_url import PgConfig
from offload.records import BatchRecord, JobRecord, MinuteCounts, WorkerInfo

T = TypeVar("T")

CAPABILITIES = Capabilities(
    push_wakeups=True, shared_between_processes=True, transactional_enqueue=True
)

CONNECT_TIMEOUT_S = 5
#: A migration may wait for another process's (an advisory lock) and rewrite tables.
MIGRATE_TIMEOUT_S = 300.0
#: libpq settings a URL does not give: a bounded connect, and TCP keepalives that find a
#: peer gone on a real network (a local hop that still ACKs defeats them: the deadlines
#: cover that). ``tcp_user_timeout`` comes from the URL's ``timeout_s``.
LIBPQ_DEFAULTS = {
    "connect_timeout": CONNECT_TIMEOUT_S, "keepalives": 1, "keepalives_idle": 30,
    "keepalives_interval": 10, "keepalives_count": 3,
}  # fmt: skip


class _Runner:
    def __init__(self, clock: Callable[[], float] | None) -> None:
        self._clock = clock

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        if self._clock is not None:
            return {**params, "now_s": self._clock()}
        return params


def _has_rows(cursor: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> bool:
    # cheaper than cursor.description, which builds a Column object per column
    result = cursor.pgresult
    return result is not None and result.status == psycopg.pq.ExecStatus.TUPLES_OK


def drive_sync(cursor: psycopg.Cursor[Any], plan: Plan[T], runner: _Runner) -> T:
    try:
        statement = next(plan)
        while True:
            cursor.execute(statement[0], runner._params(statement[1]) or None)
            rows = cursor.fetchall() if _has_rows(cursor) else []
            statement = plan.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def drive_async(cursor: psycopg.AsyncCursor[Any], plan: Plan[T], runner: _Runner) -> T:
    try:
        statement = next(plan)
        while True:
            await cursor.execute(statement[0], runner._params(statement[1]) or None)
            rows = await cursor.fetchall() if _has_rows(cursor) else []
            statement = plan.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class PostgresSync(_Runner):
    """The blocking client, on its own small sync pool."""

    def __init__(self, config: PgConfig, st: Statements, clock: Callable[[], float] | None) -> None:
        super().__init__(clock)
        self._config = config
        self._st = st
        self._pool: psycopg_pool.ConnectionPool | None = None
        self._opening = threading.Lock()
        self._migrated = not config.migrate
        self._watchdog = Watchdog()
        self.capabilities = CAPABILITIES

    def _get_pool(self) -> psycopg_pool.ConnectionPool:
        if self._pool is not None:
            return self._pool
        with self._opening:  # threads racing to open would each leak a pool
            if self._pool is not None:
                return self._pool
            kwargs = _connection_kwargs(self._config)
            try:  # one plain connection first: libpq's own words beat a pool timeout
                psycopg.connect(self._config.conninfo, **kwargs).close()
            except psycopg.Error as exc:
                raise _unreachable(exc) from exc
            self._pool = psycopg_pool.ConnectionPool(
                self._config.conninfo, min_size=1, max_size=self._config.pool_max,
                kwargs=kwargs, open=True, timeout=10, name="offload-sync",
            )  # fmt: skip
        return self._pool

    def run(self, plan: Plan[T], *, atomic: bool = False) -> T:
        """Drive ``plan`` on a pooled connection; ``atomic``: in one transaction."""
        try:
            self._ensure_schema()
            with (
                self._get_pool().connection() as conn,
                self._watchdog.deadline(conn, self._config.timeout_s),
                conn.transaction() if atomic else contextlib.nullcontext(),
                conn.cursor() as cur,
            ):
                return drive_sync(cur, plan, self)
        except SilentConnection:
            self._drain()
            raise
        except Exception as exc:
            reraise(exc)

    def _drain(self) -> None:
        """One connection went silent: the others, opened over the same path, are suspect."""
        if self._pool is not None:
            with contextlib.suppress(Exception):
                self._pool.drain()

    def _ensure_schema(self) -> None:
        if not self._migrated:
            deadline_s = max(self._config.timeout_s, MIGRATE_TIMEOUT_S)
            with (
                self._get_pool().connection() as conn,
                self._watchdog.deadline(conn, deadline_s),
                conn.transaction(),
                conn.cursor() as cur,
            ):
                drive_sync(cur, plan_migrate(self._st, self._config.schema), self)
            self._migrated = True

    def enqueue_in(self, connection: Any, params: EnqueueParams) -> list[JobRecord]:
        """Enqueue inside the caller's open transaction: the jobs exist iff it commits."""
        if not isinstance(connection, psycopg.Connection):
            raise TypeError("connection must be a psycopg.Connection (or use enqueue_async)")
        # the caller's transaction makes it all or nothing; in autocommit, our own does
        atomic = connection.autocommit and not enqueue_is_atomic_alone(params)
        try:
            self._ensure_schema()
            with (
                connection.transaction() if atomic else contextlib.nullcontext(),
                connection.cursor() as cursor,
            ):
                return drive_sync(cursor, plan_enqueue(self._st, params), self)
        except Exception as exc:
            reraise(exc)

    def enqueue(self, params: EnqueueParams) -> list[JobRecord]:
        return self.run(plan_enqueue(self._st, params), atomic=not enqueue_is_atomic_alone(params))

    def get(self, params: IdsParams) -> list[JobRecord]:
        return self.run(plan_get(self._st, params.ids))

    def query(self, params: QueryParams) -> Page:
        return self.run(plan_query(self._st, params))

    def cancel(self, params: IdsParams) -> list[JobRecord]:
        return self.run(plan_cancel(self._st, params))

    def retry(self, params: IdsParams) -> list[JobRecord]:
        return self.run(plan_retry(self._st, params))

    def stats(self) -> list[QueueStats]:
        return self.run(plan_stats(self._st))

    def purge(self, params: PurgeParams) -> int:
        return self.run(plan_purge(self._st, params))

    def count(self, params: CountParams) -> int:
        return self.run(plan_count(self._st, params))

    def delete(self, params: IdsParams) -> list[str]:
        return self.run(plan_delete(self._st, params))

    def publish(self, params: PublishParams) -> None:
        self.run(plan_publish(self._st, params))

    def workers(self) -> list[WorkerInfo]:
        return self.run(plan_workers(self._st))

    def batches(self, params: BatchQueryParams) -> list[BatchRecord]:
        return self.run(plan_batches(self._st, params))

    def record_counts(self, params: CountsParams) -> None:
        self.run(plan_record_counts(self._st, params))

    def read_counts(self, params: CountsQuery) -> list[MinuteCounts]:
        return self.run(plan_read_counts(self._st, params))

    def get_marks(self, params: MarkNamesParams) -> dict[str, str]:
        return self.run(plan_get_marks(self._st, params))

    def set_mark(self, params: MarkParams) -> bool:
        return self.run(plan_set_mark(self._st, params))

    def now(self) -> float:
        return self._clock() if self._clock is not None else self.run(plan_now(self._st))

    def migrate(self) -> int:
        self._migrated = False
        self.run(plan_now(self._st))
        return migration_scripts()[-1][0]

    def close(self) -> None:
        self._watchdog.close()
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def _connection_kwargs(config: PgConfig) -> dict[str, Any]:
    # Every step but a migration is one statement: autocommit saves the COMMIT round trip.
    kwargs: dict[str, Any] = {"autocommit": True}
    if not config.prepare:
        kwargs["prepare_threshold"] = None
    given = set(psycopg.conninfo.conninfo_to_dict(config.conninfo))
    if os.environ.get("PGCONNECT_TIMEOUT"):
        given.add("connect_timeout")
    defaults = {**LIBPQ_DEFAULTS, "tcp_user_timeout": int(config.timeout_s * 1000)}
    kwargs |= {name: value for name, value in defaults.items() if name not in given}
    return kwargs
