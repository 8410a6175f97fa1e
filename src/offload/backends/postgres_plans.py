"""PostgreSQL plans: each operation written once, as a generator of SQL statements.

A plan yields ``(sql, params)`` and receives the statement's rows; the sync and the
async runner (``postgres_sync``, ``postgres``) drive the same plans, so the two paths
cannot drift. Leases and due times use the database's clock.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, TypeVar

import msgspec
from psycopg import sql as pgsql

from offload.backends.base import (
    BackendError,
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
)
from offload.backends.rows import job_from_row
from offload.backends.sqlfile import load_migrations, load_queries, read_sql
from offload.records import FAIR_STEP_S, WORKER_LOST, JobRecord
from offload.states import JobState

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
SCHEMA_LOCK_KEY = 0x0FF10AD  # pg_advisory_xact_lock key that serialises migrations


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
