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
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import psycopg
import psycopg_pool
from psycopg import sql as pgsql

from offload.backends.base import (
    BackendError,
    Capabilities,
    ClaimParams,
    EnqueueParams,
    FinishParams,
    FinishResult,
    HeartbeatParams,
    HeartbeatResult,
    IdsParams,
    JobFilter,
    LockParams,
    MarkNamesParams,
    MarkParams,
    Page,
    ProgressParams,
    PruneParams,
    PurgeParams,
    QueryParams,
    QueueStats,
    ReapedJob,
    ReapParams,
    StoreRefused,
    WaitParams,
)
from offload.backends.rows import job_from_row
from offload.backends.sqlfile import load_migrations, load_queries, read_sql
from offload.records import FAIR_STEP_S, WORKER_LOST, JobRecord
from offload.states import JobState

log = logging.getLogger("offload.postgres")

T = TypeVar("T")
Rows = list[tuple[Any, ...]]
Statement = tuple[str, dict[str, Any]]
Plan = Generator[Statement, Rows, T]

COLUMNS = (
    "id, task, queue, state, payload, priority, attempt, max_attempts, delivery, crashes, "
    "extract(epoch FROM run_at)::float8, extract(epoch FROM lease_until)::float8, lease_s, "
    "timeout_s, worker, progress, progress_message, result, error::text, "
    "extract(epoch FROM created_at)::float8, extract(epoch FROM started_at)::float8, "
    "extract(epoch FROM finished_at)::float8, key, batch, owner, meta::text"
)
_encode = msgspec.json.encode
_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout, OSError)
SCHEMA_LOCK_KEY = 0x0FF10AD  # pg_advisory_xact_lock key that serialises migrations


@dataclass(frozen=True)
class PgConfig:
    conninfo: str
    schema: str = "offload"
    migrate: bool = True
    listen: bool = True
    prepare: bool = True
    pool_max: int = 10
    poll_s: float = 1.0


def parse_postgres_url(url: str) -> PgConfig:
    """Offload's own options ride in the query string; the rest goes to libpq untouched."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _OPTIONS:
            ours[name] = value
        else:
            theirs.append((name, value))
    schema = ours.get("schema", "offload")
    if not schema.replace("_", "").isalnum() or len(schema) > 40:
        raise ValueError(f"schema must be letters, digits and _ (at most 40), got {schema!r}")

    def flag(name: str, default: bool) -> bool:
        value = ours.get(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"URL option {name} must be true or false, got {value!r}")

    conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(theirs), ""))
    return PgConfig(
        conninfo=conninfo, schema=schema, migrate=flag("migrate", True),
        listen=flag("listen", True), prepare=flag("prepare", True),
        pool_max=int(ours.get("pool_max", 10)), poll_s=float(ours.get("poll_s", 1.0)),
    )  # fmt: skip


_OPTIONS = {"schema", "migrate", "listen", "prepare", "pool_max", "poll_s"}


class Statements:
    """The resource SQL, bound to a schema and a clock expression."""

    def __init__(self, schema: str, injected_clock: bool) -> None:
        quoted = pgsql.Identifier(schema).as_string(None)
        self.schema = quoted
        self.channel = f"offload_{schema}"
        now = "to_timestamp(%(now_s)s::float8)" if injected_clock else "now()"
        self.queries = {
            name: text.replace("{schema}", quoted).replace("{cols}", COLUMNS).replace("{now}", now)
            for name, text in load_queries("offload.backends", "postgres_sql/queries.sql").items()
        }

    def __getitem__(self, name: str) -> str:
        return self.queries[name]


def migration_scripts() -> list[tuple[int, str]]:
    return load_migrations("offload.backends", "postgres_sql/migrations")


def fresh_schema_sql() -> str:
    return read_sql("offload.backends", "postgres_sql/schema.sql")


# -- plans: each operation written once ----------------------------------------


def plan_migrate(st: Statements, schema: str) -> Plan[int]:
    """Create or upgrade the schema; concurrent first users wait on an advisory lock."""
    yield (f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})", {})
    yield (f"CREATE SCHEMA IF NOT EXISTS {st.schema}", {})
    yield (f"CREATE TABLE IF NOT EXISTS {st.schema}.schema_version (version integer NOT NULL)", {})
    rows = yield (f"SELECT max(version) FROM {st.schema}.schema_version", {})
    current = rows[0][0] or 0
    steps = migration_scripts()
    latest = steps[-1][0]
    if current > latest:
        raise StoreRefused(
            f"the {schema} schema is version {current}, newer than this offload ({latest}); "
            "upgrade offload"
        )
    if current == 0:
        yield (fresh_schema_sql().replace("{schema}", st.schema), {})
    else:
        for version, script in steps:
            if version > current:
                yield (script.replace("{schema}", st.schema), {})
    if current != latest:
        yield (f"INSERT INTO {st.schema}.schema_version VALUES (%(v)s)", {"v": latest})
    return latest


def plan_enqueue(st: Statements, params: EnqueueParams) -> Plan[list[JobRecord]]:
    jobs = list(params.jobs)
    if not jobs:
        return []
    fair = any(j.fair for j in jobs)  # only then the statement that hands out turns
    if len(jobs) == 1 and not fair:  # scalar parameters: cheaper to adapt than fourteen arrays
        j = jobs[0]
        rows = yield (
            st["enqueue_one"],
            {
                "id": j.id, "task": j.task, "queue": j.queue, "payload": j.payload,
                "priority": j.priority, "max_attempts": j.max_attempts, "run_at_s": j.run_at,
                "delay_s": j.delay_s, "lease_s": j.lease_s, "timeout_s": j.timeout_s,
                "key": j.key, "batch": j.batch, "owner": j.owner,
                "meta": _encode(j.meta).decode() if j.meta else None, "channel": st.channel,
            },
        )  # fmt: skip
        if rows:
            return [job_from_row(rows[0])]
        holder = yield (st["live_keys"], {"keys": [j.key]})
        if not holder:
            raise BackendError("enqueue stored nothing and no live job holds its key")
        return [job_from_row(holder[0])]
    args: dict[str, Any] = {
        "channel": st.channel,
        "ids": [j.id for j in jobs], "tasks": [j.task for j in jobs],
        "queues": [j.queue for j in jobs], "payloads": [j.payload for j in jobs],
        "priorities": [j.priority for j in jobs],
        "max_attempts": [j.max_attempts for j in jobs],
        "run_ats": [j.run_at for j in jobs], "delays": [j.delay_s for j in jobs],
        "lease_ss": [j.lease_s for j in jobs], "timeout_ss": [j.timeout_s for j in jobs],
        "keys": [j.key for j in jobs], "batches": [j.batch for j in jobs],
        "owners": [j.owner for j in jobs],
        "metas": [_encode(j.meta).decode() if j.meta else None for j in jobs],
    }  # fmt: skip
    if fair:
        args |= {"fairs": [j.fair for j in jobs], "step": FAIR_STEP_S}
    rows = yield (st["enqueue_fair"] if fair else st["enqueue"], args)
    inserted = {r.id: r for r in map(job_from_row, rows)}
    held: dict[str, JobRecord] = {}
    missing = [j.key for j in jobs if j.id not in inserted and j.key is not None]
    if len(inserted) + len(missing) < len(jobs):
        raise BackendError("enqueue stored fewer jobs than asked and none held their key")
    if missing:
        for row in (yield (st["live_keys"], {"keys": missing})):
            record = job_from_row(row)
            held[record.key or ""] = record
    return [inserted.get(j.id) or held[j.key or ""] for j in jobs]


def plan_get(st: Statements, ids: Sequence[str]) -> Plan[list[JobRecord]]:
    wanted = list(ids)
    if not wanted:
        return []
    rows = yield (st["get"], {"ids": wanted})
    by_id = {r.id: r for r in map(job_from_row, rows)}
    return [by_id[i] for i in ids if i in by_id]


def plan_cancel(st: Statements, params: IdsParams) -> Plan[list[JobRecord]]:
    ids = list(params.ids)
    if ids:
        yield (st["cancel"], {"ids": ids})
    return (yield from plan_get(st, params.ids))


def plan_retry(st: Statements, params: IdsParams) -> Plan[list[JobRecord]]:
    ids = list(params.ids)
    if ids:
        yield (st["retry"], {"ids": ids, "channel": st.channel})
    return (yield from plan_get(st, params.ids))


def plan_query(st: Statements, params: QueryParams) -> Plan[Page]:
    f: JobFilter = params.filter
    where = ["TRUE"]
    args: dict[str, Any] = {"limit": params.limit + 1}
    if f.states:
        where.append("state = ANY(%(states)s::text[])")
        args["states"] = [JobState(s).value for s in f.states]
    for column in ("queue", "task", "owner", "batch"):
        value = getattr(f, column)
        if value is not None:
            where.append(f"{column} = %({column})s")
            args[column] = value
    if params.cursor is not None:
        where.append("id < %(cursor)s")
        args["cursor"] = params.cursor
    rows = yield (
        f"SELECT {COLUMNS} FROM {st.schema}.jobs WHERE {' AND '.join(where)} "
        "ORDER BY id DESC LIMIT %(limit)s",
        args,
    )
    jobs = [job_from_row(r) for r in rows]
    more = len(jobs) > params.limit
    jobs = jobs[: params.limit]
    return Page(jobs=jobs, next_cursor=jobs[-1].id if more and jobs else None)


def plan_stats(st: Statements) -> Plan[list[QueueStats]]:
    counts: dict[str, dict[str, int]] = {}
    for queue, state, count in (yield (st["stats_counts"], {})):
        counts.setdefault(queue, {s.value: 0 for s in JobState})[state] = count
    oldest: dict[str, float] = dict((yield (st["stats_oldest"], {})))
    recent: dict[str, int] = dict((yield (st["stats_recent"], {})))
    return [
        QueueStats(
            queue=queue,
            counts=per_state,
            oldest_ready_age_s=oldest.get(queue),
            finished_last_minute=recent.get(queue, 0),
        )
        for queue, per_state in sorted(counts.items())
    ]


def plan_purge(st: Statements, params: PurgeParams) -> Plan[int]:
    rows = yield (
        st["purge"] + " RETURNING 1",
        {"states": [JobState(s).value for s in params.states], "queue": params.queue},
    )
    return len(rows)


def plan_claim(st: Statements, params: ClaimParams) -> Plan[list[JobRecord]]:
    queues = list(params.queues)
    rows = yield (
        st["claim"] if len(queues) == 1 else st["claim_many_queues"],
        {"worker": params.worker, "lease_s": params.lease_s, "queues": queues,
         "queue": queues[0] if queues else None, "limit": params.limit},
    )  # fmt: skip
    jobs = [job_from_row(r) for r in rows]
    jobs.sort(key=lambda j: (-j.priority, j.run_at, j.id))
    return jobs


def plan_heartbeat(st: Statements, params: HeartbeatParams) -> Plan[HeartbeatResult]:
    leases = list(params.leases)
    rows = yield (
        st["heartbeat"],
        {"ids": [lease.id for lease in leases], "deliveries": [lease.delivery for lease in leases],
         "lease_s": params.lease_s},
    )  # fmt: skip
    kept = {r[0] for r in rows}
    return HeartbeatResult(lost=[lease.id for lease in leases if lease.id not in kept])


def plan_finish(st: Statements, params: FinishParams) -> Plan[FinishResult]:
    outcomes = list(params.outcomes)
    rows = yield (
        st["finish"],
        {
            "ids": [o.id for o in outcomes], "deliveries": [o.delivery for o in outcomes],
            "kinds": [o.kind.value for o in outcomes], "results": [o.result for o in outcomes],
            "errors": [None if o.error is None else _encode(o.error).decode() for o in outcomes],
            "delays": [o.retry_delay_s for o in outcomes], "channel": st.channel,
            "metas": [None if o.meta is None else _encode(o.meta).decode() for o in outcomes],
        },
    )  # fmt: skip
    accepted = {r[0] for r in rows}
    return FinishResult(rejected=[o.id for o in outcomes if o.id not in accepted])


def plan_progress(st: Statements, params: ProgressParams) -> Plan[None]:
    updates = list(params.updates)
    yield (
        st["progress"],
        {"ids": [u.id for u in updates], "deliveries": [u.delivery for u in updates],
         "progress": [u.progress for u in updates], "messages": [u.message for u in updates]},
    )  # fmt: skip
    return None


def plan_reap(st: Statements, params: ReapParams) -> Plan[list[ReapedJob]]:
    rows = yield (
        st["reap_expired"],
        {
            "error": _encode(WORKER_LOST).decode(),
            "max_crashes": params.max_crashes,
            "channel": st.channel,
        },
    )
    return [ReapedJob(id=r[0], state=JobState(r[1])) for r in rows]


def plan_rowcount(st: Statements, name: str, args: dict[str, Any]) -> Plan[int]:
    rows = yield (st[name] + " RETURNING 1", args)
    return len(rows)


def plan_prune(st: Statements, params: PruneParams) -> Plan[int]:
    """Delete jobs that ended before the horizon, and the turns handed out before it."""
    yield (st["prune_turns"], {"before": params.finished_before})
    states = [JobState(s).value for s in params.states]
    return (
        yield from plan_rowcount(st, "prune", {"states": states, "before": params.finished_before})
    )


def plan_lock(st: Statements, params: LockParams) -> Plan[bool]:
    rows = yield (st["lock"], {"name": params.name, "owner": params.owner, "ttl_s": params.ttl_s})
    return bool(rows)


def plan_unlock(st: Statements, params: LockParams) -> Plan[None]:
    yield (st["unlock"], {"name": params.name, "owner": params.owner})
    return None


def plan_get_marks(st: Statements, params: MarkNamesParams) -> Plan[dict[str, str]]:
    names = list(params.names)
    if not names:
        return {}
    rows = yield (st["get_marks"], {"names": names})
    return {name: value for name, value in rows}


def plan_set_mark(st: Statements, params: MarkParams) -> Plan[bool]:
    """One statement, so two leaders racing cannot both win: the loser's INSERT meets the
    winner's row, or its UPDATE re-reads the row after the winner's commit and skips it."""
    if params.expected is None:
        rows = yield (st["create_mark"], {"name": params.name, "value": params.value})
    else:
        rows = yield (
            st["update_mark"],
            {"name": params.name, "value": params.value, "expected": params.expected},
        )
    return bool(rows)


def plan_next_ready(st: Statements, queues: Sequence[str]) -> Plan[tuple[float | None, float]]:
    rows = yield (st["next_ready"], {"queues": list(queues)})
    return rows[0][0], rows[0][1]


def plan_now(st: Statements) -> Plan[float]:
    rows = yield (st["now"], {})
    return float(rows[0][0])


# -- runners -----------------------------------------------------------------


CONNECT_TIMEOUT_S = 5


def _unreachable(exc: BaseException) -> BackendError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return BackendError(
        f"cannot connect to PostgreSQL ({detail}); check the URL (--url or OFFLOAD_URL) "
        "and that the server is running"
    )


def _fail(exc: BaseException) -> BackendError:
    return BackendError(f"PostgreSQL is unavailable or refused the operation: {exc}".strip())


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


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return ValueError(f"a job with this id already exists: {exc}")
    if isinstance(exc, _TRANSIENT):
        return _fail(exc)
    return exc


class PostgresSync(_Runner):
    """The blocking client, on its own small sync pool."""

    def __init__(self, config: PgConfig, st: Statements, clock: Callable[[], float] | None) -> None:
        super().__init__(clock)
        self._config = config
        self._st = st
        self._pool: psycopg_pool.ConnectionPool | None = None
        self._opening = threading.Lock()
        self._migrated = not config.migrate
        self.capabilities = PostgresBackend.capabilities

    def _get_pool(self) -> psycopg_pool.ConnectionPool:
        if self._pool is not None:
            return self._pool
        with self._opening:  # threads racing to open would each leak a pool
            if self._pool is not None:
                return self._pool
            try:  # one plain connection first: libpq's own words beat a pool timeout
                psycopg.connect(self._config.conninfo, connect_timeout=CONNECT_TIMEOUT_S).close()
            except psycopg.Error as exc:
                raise _unreachable(exc) from exc
            self._pool = psycopg_pool.ConnectionPool(
                self._config.conninfo, min_size=1, max_size=self._config.pool_max,
                kwargs=_connection_kwargs(self._config), open=True, timeout=10,
                name="offload-sync",
            )  # fmt: skip
        return self._pool

    def run(self, plan: Plan[T]) -> T:
        try:
            self._ensure_schema()
            with self._get_pool().connection() as conn, conn.cursor() as cursor:
                return drive_sync(cursor, plan, self)
        except Exception as exc:
            raise _translate(exc) from exc

    def _ensure_schema(self) -> None:
        if not self._migrated:
            with self._get_pool().connection() as conn, conn.transaction(), conn.cursor() as cur:
                drive_sync(cur, plan_migrate(self._st, self._config.schema), self)
            self._migrated = True

    def enqueue_in(self, connection: Any, params: EnqueueParams) -> list[JobRecord]:
        """Enqueue inside the caller's open transaction: the jobs exist iff it commits."""
        if not isinstance(connection, psycopg.Connection):
            raise TypeError("connection must be a psycopg.Connection (or use enqueue_async)")
        try:
            self._ensure_schema()
        except Exception as exc:
            raise _translate(exc) from exc
        with connection.cursor() as cursor:
            return drive_sync(cursor, plan_enqueue(self._st, params), self)

    def enqueue(self, params: EnqueueParams) -> list[JobRecord]:
        return self.run(plan_enqueue(self._st, params))

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
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def _connection_kwargs(config: PgConfig) -> dict[str, Any]:
    # Every step but a migration is one statement: autocommit saves the COMMIT round trip.
    kwargs: dict[str, Any] = {"autocommit": True}
    if not config.prepare:
        kwargs["prepare_threshold"] = None
    return kwargs


class _Waiter:
    __slots__ = ("event", "queues")

    def __init__(self, queues: Sequence[str]) -> None:
        self.queues = frozenset(queues)
        self.event = asyncio.Event()


class PostgresBackend(_Runner):
    capabilities = Capabilities(
        push_wakeups=True, shared_between_processes=True, transactional_enqueue=True
    )

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
                try:
                    conn = await psycopg.AsyncConnection.connect(
                        self.config.conninfo, connect_timeout=CONNECT_TIMEOUT_S
                    )
                    await conn.close()
                except psycopg.Error as exc:
                    raise _unreachable(exc) from exc
                pool = psycopg_pool.AsyncConnectionPool(
                    self.config.conninfo, min_size=1, max_size=self.config.pool_max,
                    kwargs=_connection_kwargs(self.config), open=False, timeout=10,
                    name="offload-async",
                )  # fmt: skip
                await pool.open()
                self._pool, self._pool_loop = pool, loop
        return self._pool

    async def run(self, plan: Plan[T]) -> T:
        try:
            pool = await self._ensure_schema()
            async with pool.connection() as conn, conn.cursor() as cursor:
                return await drive_async(cursor, plan, self)
        except Exception as exc:
            raise _translate(exc) from exc

    async def _ensure_schema(self) -> psycopg_pool.AsyncConnectionPool:
        pool = await self._get_pool()
        if not self._migrated:
            async with pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
                await drive_async(cursor, plan_migrate(self.st, self.config.schema), self)
            self._migrated = True
        return pool

    async def enqueue_in(self, connection: Any, params: EnqueueParams) -> list[JobRecord]:
        if not isinstance(connection, psycopg.AsyncConnection):
            raise TypeError("connection must be a psycopg.AsyncConnection (or use enqueue)")
        try:
            await self._ensure_schema()
        except Exception as exc:
            raise _translate(exc) from exc
        async with connection.cursor() as cursor:
            return await drive_async(cursor, plan_enqueue(self.st, params), self)

    async def enqueue(self, params: EnqueueParams) -> list[JobRecord]:
        return await self.run(plan_enqueue(self.st, params))

    async def claim(self, params: ClaimParams) -> list[JobRecord]:
        return await self.run(plan_claim(self.st, params))

    async def heartbeat(self, params: HeartbeatParams) -> HeartbeatResult:
        return await self.run(plan_heartbeat(self.st, params))

    async def finish(self, params: FinishParams) -> FinishResult:
        return await self.run(plan_finish(self.st, params))

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
        return await self.run(plan_prune(self.st, params))

    async def purge(self, params: PurgeParams) -> int:
        return await self.run(plan_purge(self.st, params))

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

    async def _sleep(self, params: WaitParams) -> None:
        """Sleep until a NOTIFY for one of ``queues``, the next due job, or the timeout."""
        waiter = _Waiter(params.queues)
        self._waiters.add(waiter)
        try:
            if self.config.listen:
                self._ensure_listener()
                # Check for work only once LISTEN is active, so no NOTIFY falls in between.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(params.timeout_s):
                        await self._listening.wait()
            next_ready, now = await self.run(plan_next_ready(self.st, params.queues))
            if next_ready is not None and next_ready <= now:
                return
            timeout_s = params.timeout_s
            if not self.config.listen:
                timeout_s = min(timeout_s, self.config.poll_s)
            if next_ready is not None:
                timeout_s = min(timeout_s, next_ready - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(timeout_s, 0.0)):
                    await waiter.event.wait()
        finally:
            self._waiters.discard(waiter)

    def _wake(self, queue: str | None) -> None:
        for waiter in list(self._waiters):
            if queue is None or queue in waiter.queues:
                waiter.event.set()

    def _ensure_listener(self) -> None:
        loop = asyncio.get_running_loop()
        if self._listener is None or self._listener.done() or self._listener.get_loop() is not loop:
            self._listening = asyncio.Event()
            self._listener = loop.create_task(self._listen_forever(), name="offload-pg-listen")

    async def _listen_forever(self) -> None:
        failures = 0
        channel = pgsql.Identifier(self.st.channel)
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.config.conninfo, autocommit=True)
                async with conn:
                    await conn.execute(pgsql.SQL("LISTEN {}").format(channel))
                    if failures:
                        log.warning("PostgreSQL is reachable again; listening for new jobs")
                        self._wake(None)  # anything may have arrived while we were away
                    failures = 0
                    self._listening.set()
                    async for notify in conn.notifies():
                        self._wake(notify.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._listening.clear()
                failures += 1
                pause_s = min(5.0, 0.1 * 2**failures)
                log.error(
                    "PostgreSQL is unreachable (%s); reconnecting in %.1fs",
                    str(exc).strip() or type(exc).__name__, pause_s,
                )  # fmt: skip
                self._wake(None)
                await asyncio.sleep(pause_s)

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


__all__ = ["PostgresBackend", "PostgresSync", "parse_postgres_url", "postgres_backend"]
