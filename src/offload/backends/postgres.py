"""PostgreSQL: one statement per step, SKIP LOCKED claims, LISTEN/NOTIFY wake-ups.

Each operation is written once as a *plan*: a generator that yields SQL
statements and receives their rows. A sync runner (for Flask, Django, scripts
and transactional enqueue on the caller's connection) and an async runner (for
the worker and FastAPI) drive the same plans, so the two paths cannot drift.
Leases and due times use the database's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import psycopg_pool

from offload.backends.base import (
    ALL_EVENTS,
    BatchQueryParams,
    Capabilities,
    ClaimParams,
    CountParams,
    CountsParams,
    CountsQuery,
    EnqueueParams,
    EventStream,
    FinishParams,
    FinishResult,
    HeartbeatParams,
    HeartbeatResult,
    IdsParams,
    LockParams,
    MarkNamesParams,
    MarkParams,
    Page,
    ProgressParams,
    PruneParams,
    PublishParams,
    PurgeParams,
    QueryParams,
    QueueStats,
    ReapedJob,
    ReapParams,
    SubscribeParams,
    WaitParams,
    WorkerBeatParams,
)
from offload.backends.postgres_admin import (
    plan_beat_worker,
    plan_count,
    plan_delete,
    plan_publish,
    plan_query,
    plan_remove_workers,
    plan_workers,
)
from offload.backends.postgres_deadline import (
    SilentConnection,
    guarded,
)
from offload.backends.postgres_endings import (
    plan_batches,
    plan_prune_all,
    plan_read_counts,
    plan_record_counts,
)
from offload.backends.postgres_enqueue import enqueue_is_atomic_alone, plan_enqueue, plan_finish
from offload.backends.postgres_errors import _unreachable, reraise
from offload.backends.postgres_events import event_stream
from offload.backends.postgres_plans import (
    Plan,
    Statements,
    fresh_schema_sql,
    migration_scripts,
    plan_cancel,
    plan_claim,
    plan_get,
    plan_get_marks,
    plan_heartbeat,
    plan_lock,
    plan_migrate,
    plan_now,
    plan_progress,
    plan_purge,
    plan_reap,
    plan_retry,
    plan_rowcount,
    plan_set_mark,
    plan_stats,
    plan_unlock,
)
from offload.backends.postgres_sync import (
    CAPABILITIES,
    MIGRATE_TIMEOUT_S,
    PostgresSync,
    _connection_kwargs,
    _Runner,
    drive_async,
)
from offload.backends.postgres_url import PgConfig, parse_postgres_url
from offload.backends.postgres_wake import PgWakeups, _Waiter
from offload.records import BatchRecord, JobRecord, MinuteCounts, WorkerInfo

log = logging.getLogger("offload.postgres")

T = TypeVar("T")


class PostgresBackend(PgWakeups, _Runner):
    capabilities = CAPABILITIES

    def __init__(self, config: PgConfig, clock: Callable[[], float] | None = None) -> None:
        super().__init__(clock)
        self.config = config
        self.st = Statements(config.schema, injected_clock=clock is not None)
        self._sync = PostgresSync(config, self.st, clock)
        self._pool: psycopg_pool.AsyncConnectionPool | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._opening: tuple[asyncio.Lock, asyncio.AbstractEventLoop] | None = None
        self._migrated = not config.migrate
        self._waiters: set[_Waiter] = set()
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        if not config.listen:
            self.capabilities = Capabilities(
                push_wakeups=False, shared_between_processes=True, transactional_enqueue=True
            )

    @property
    def blocking(self) -> PostgresSync:
        return self._sync

    async def _get_pool(self) -> psycopg_pool.AsyncConnectionPool:
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._pool_loop is loop:
            return self._pool
        if self._opening is None or self._opening[1] is not loop:
            self._opening = (asyncio.Lock(), loop)
        async with self._opening[0]:  # the first calls of a worker come at once: open one pool
            if self._pool is None or self._pool_loop is not loop:
                kwargs = _connection_kwargs(self.config)
                try:
                    conn = await psycopg.AsyncConnection.connect(self.config.conninfo, **kwargs)
                    await conn.close()
                except psycopg.Error as exc:
                    raise _unreachable(exc) from exc
                pool = psycopg_pool.AsyncConnectionPool(
                    self.config.conninfo, min_size=1, max_size=self.config.pool_max,
                    kwargs=kwargs, open=False, timeout=10, name="offload-async",
                )  # fmt: skip
                await pool.open()
                self._pool, self._pool_loop = pool, loop
        return self._pool

    async def run(self, plan: Plan[T], *, atomic: bool = False) -> T:
        """Drive ``plan`` on a pooled connection; ``atomic``: in one transaction."""
        try:
            pool = await self._ensure_schema()
            async with pool.connection() as conn:
                return await guarded(conn, self._drive(conn, plan, atomic), self.config.timeout_s)
        except SilentConnection:
            await self._drain()
            raise
        except Exception as exc:
            reraise(exc)

    async def _drive(self, conn: psycopg.AsyncConnection[Any], plan: Plan[T], atomic: bool) -> T:
        if atomic:
            async with conn.transaction(), conn.cursor() as cursor:
                return await drive_async(cursor, plan, self)
        async with conn.cursor() as cursor:
            return await drive_async(cursor, plan, self)

    async def _drain(self) -> None:
        """A connection went silent: the others, opened over the same path, are suspect."""
        if self._pool is not None and self._pool_loop is asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                await self._pool.drain()

    async def _ensure_schema(self) -> psycopg_pool.AsyncConnectionPool:
        pool = await self._get_pool()
        if not self._migrated:
            plan = plan_migrate(self.st, self.config.schema)
            deadline_s = max(self.config.timeout_s, MIGRATE_TIMEOUT_S)
            async with pool.connection() as conn:
                await guarded(conn, self._drive(conn, plan, atomic=True), deadline_s)
            self._migrated = True
        return pool

    async def enqueue_in(self, connection: Any, params: EnqueueParams) -> list[JobRecord]:
        if not isinstance(connection, psycopg.AsyncConnection):
            raise TypeError("connection must be a psycopg.AsyncConnection (or use enqueue)")
        # the caller's transaction makes it all or nothing; in autocommit, our own does
        plan = plan_enqueue(self.st, params)
        try:
            await self._ensure_schema()
            if connection.autocommit and not enqueue_is_atomic_alone(params):
                async with connection.transaction(), connection.cursor() as cursor:
                    return await drive_async(cursor, plan, self)
            async with connection.cursor() as cursor:
                return await drive_async(cursor, plan, self)
        except Exception as exc:
            reraise(exc)

    async def enqueue(self, params: EnqueueParams) -> list[JobRecord]:
        atomic = not enqueue_is_atomic_alone(params)
        return await self.run(plan_enqueue(self.st, params), atomic=atomic)

    async def claim(self, params: ClaimParams) -> list[JobRecord]:
        return await self.run(plan_claim(self.st, params))

    async def heartbeat(self, params: HeartbeatParams) -> HeartbeatResult:
        return await self.run(plan_heartbeat(self.st, params))

    async def finish(self, params: FinishParams) -> FinishResult:
        atomic = any(o.follow_ups for o in params.outcomes)  # stored with their finish
        return await self.run(plan_finish(self.st, params), atomic=atomic)

    async def report_progress(self, params: ProgressParams) -> None:
        await self.run(plan_progress(self.st, params))

    async def cancel(self, params: IdsParams) -> list[JobRecord]:
        return await self.run(plan_cancel(self.st, params))

    async def retry(self, params: IdsParams) -> list[JobRecord]:
        return await self.run(plan_retry(self.st, params))

    async def get(self, params: IdsParams) -> list[JobRecord]:
        return await self.run(plan_get(self.st, params.ids))

    async def query(self, params: QueryParams) -> Page:
        return await self.run(plan_query(self.st, params))

    async def stats(self) -> list[QueueStats]:
        return await self.run(plan_stats(self.st))

    async def promote_due(self) -> int:
        return await self.run(plan_rowcount(self.st, "promote_due", {}))

    async def reap_expired(self, params: ReapParams) -> list[ReapedJob]:
        return await self.run(plan_reap(self.st, params))

    async def prune(self, params: PruneParams) -> int:
        return await self.run(plan_prune_all(self.st, params))

    async def purge(self, params: PurgeParams) -> int:
        return await self.run(plan_purge(self.st, params))

    async def count(self, params: CountParams) -> int:
        return await self.run(plan_count(self.st, params))

    async def delete(self, params: IdsParams) -> list[str]:
        return await self.run(plan_delete(self.st, params))

    def subscribe(self, params: SubscribeParams = ALL_EVENTS) -> EventStream:
        return event_stream(
            self.config, self.st.events, self.st.control, self.st.listened, params.kinds
        )

    async def publish(self, params: PublishParams) -> None:
        await self.run(plan_publish(self.st, params))

    async def beat_worker(self, params: WorkerBeatParams) -> None:
        await self.run(plan_beat_worker(self.st, params))

    async def remove_worker(self, params: IdsParams) -> None:
        await self.run(plan_remove_workers(self.st, params))

    async def workers(self) -> list[WorkerInfo]:
        return await self.run(plan_workers(self.st))

    async def batches(self, params: BatchQueryParams) -> list[BatchRecord]:
        return await self.run(plan_batches(self.st, params))

    async def record_counts(self, params: CountsParams) -> None:
        await self.run(plan_record_counts(self.st, params))

    async def read_counts(self, params: CountsQuery) -> list[MinuteCounts]:
        return await self.run(plan_read_counts(self.st, params))

    async def lock(self, params: LockParams) -> bool:
        return await self.run(plan_lock(self.st, params))

    async def unlock(self, params: LockParams) -> None:
        await self.run(plan_unlock(self.st, params))

    async def get_marks(self, params: MarkNamesParams) -> dict[str, str]:
        return await self.run(plan_get_marks(self.st, params))

    async def set_mark(self, params: MarkParams) -> bool:
        return await self.run(plan_set_mark(self.st, params))

    async def now(self) -> float:
        return self._clock() if self._clock is not None else await self.run(plan_now(self.st))

    async def migrate(self) -> int:
        self._migrated = False
        await self.run(plan_now(self.st))
        return migration_scripts()[-1][0]

    # -- wake-ups ------------------------------------------------------------
    async def wait(self, params: WaitParams) -> list[JobRecord] | None:
        await self._sleep(params)
        return None

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(BaseException):
                await self._listener
            self._listener = None
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await self._pool.close()
            self._pool = None
        await asyncio.to_thread(self._sync.close)


def postgres_backend(url: str, clock: Callable[[], float] | None = None) -> PostgresBackend:
    return PostgresBackend(parse_postgres_url(url), clock=clock)


__all__ = [
    "PgConfig",
    "PostgresBackend",
    "PostgresSync",
    "Statements",
    "fresh_schema_sql",
    "migration_scripts",
    "parse_postgres_url",
    "postgres_backend",
]
