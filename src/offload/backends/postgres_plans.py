"""PostgreSQL plans: each operation written once, as a generator of SQL statements.

A plan yields ``(sql, params)`` and receives the statement's rows; the sync and the
async runner (``postgres_sync``, ``postgres``) drive the same plans, so the two paths
cannot drift. Leases and due times use the database's clock.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Generator, Sequence
from typing import Any, TypeVar

import msgspec
from psycopg import sql as pgsql

from offload.backends.base import (
    ClaimParams,
    HeartbeatParams,
    HeartbeatResult,
    IdsParams,
    LockParams,
    MarkNamesParams,
    MarkParams,
    ProgressParams,
    PruneParams,
    PurgeParams,
    QueueStats,
    ReapedJob,
    ReapParams,
    StoreRefused,
)
from offload.backends.postgres_exprs import expand
from offload.backends.rows import job_from_row
from offload.backends.sqlfile import load_migrations, load_queries, read_sql
from offload.backends.values import (
    check_span,
    escape_text,
    finite_progress,
)
from offload.records import MAX_ATTEMPTS_KEPT, WORKER_LOST, JobRecord
from offload.states import JobState

T = TypeVar("T")
Rows = list[tuple[Any, ...]]
Statement = tuple[str, dict[str, Any]]
Plan = Generator[Statement, Rows, T]

#: The job columns as ``job_from_row`` reads them, each named (a step's events read them
#: by name from the rows it changed). date_part gives the same float8 as extract()::float8
#: at a third of the cost (no numeric in between).
COLUMNS = (
    "id, task, queue, state, payload, priority, attempt, max_attempts, delivery, crashes, "
    "date_part('epoch', run_at) AS run_at_s, "
    "date_part('epoch', lease_until) AS lease_until_s, lease_s, timeout_s, worker, "
    "progress, progress_message, result, error::text AS error, "
    "date_part('epoch', created_at) AS created_at_s, "
    "date_part('epoch', started_at) AS started_at_s, "
    "date_part('epoch', finished_at) AS finished_at_s, key, batch, owner, "
    "meta::text AS meta, attempts::text AS attempts"
)
_encode = msgspec.json.encode
_KEY_CONFLICT = (
    "ON CONFLICT (key) WHERE key IS NOT NULL AND state IN ('scheduled', 'queued', 'running') "
    "DO NOTHING"
)
#: Rows one prune statement deletes.
PRUNE_STEP = 1000
SCHEMA_LOCK_KEY = 0x0FF10AD  # pg_advisory_xact_lock key that serialises migrations
#: A migration's statements follow each other at once: a transaction idle this long lost
#: its client, and the server ends it (releasing the migration lock).
MIGRATION_IDLE_S = 10


class Statements:
    """The resource SQL, bound to a schema and a clock expression."""

    def __init__(self, schema: str, injected_clock: bool) -> None:
        quoted = pgsql.Identifier(schema).as_string(None)
        self.schema = quoted
        #: Idle workers' wake-ups: the queue of each job made ready.
        self.channel = f"offload_{schema}"
        #: Live events (``:`` is never in a schema name, so no schema's channels meet); a
        #: name past PostgreSQL's 63 bytes (a long non-ASCII schema) is a digest of it.
        self.events = f"offload_events:{schema}"
        if len(self.events.encode()) > 63:
            self.events = f"offload_events:{hashlib.sha256(schema.encode()).hexdigest()[:40]}"
        #: Control kinds (CONTROL_KINDS), pushed always by the steps that make them.
        self.control = f"offload_control:{schema}"
        if len(self.control.encode()) > 63:
            self.control = f"offload_control:{hashlib.sha256(schema.encode()).hexdigest()[:39]}"
        #: The advisory lock key its subscribers hold (see LISTENED); another schema's
        #: key may collide, which only costs pushes nobody hears.
        self.listened = zlib.crc32(self.events.encode()) - 2**31
        #: The parameters of every statement that pushes events (or ends jobs, whose
        #: follow-ups wake idle workers).
        self.pushing = {
            "events": self.events, "listened": self.listened, "channel": self.channel,
            "control": self.control,
        }  # fmt: skip
        now = "to_timestamp(%(now_s)s::float8)" if injected_clock else "now()"
        self.queries = {
            name: expand(text)
            .replace("{schema}", quoted)
            .replace("{cols}", COLUMNS)
            .replace("{now}", now)
            for name, text in load_queries("offload.backends", "postgres_sql/queries.sql").items()
        }
        # a finish's follow-ups: the plain enqueue, but an id already stored skips its job
        enqueue = self.queries["enqueue"]
        assert enqueue.count(_KEY_CONFLICT) == 1
        # ... and counts nothing: it is no enqueue (a step that ends its parent stores it)
        counted = expand("{count_enqueued}").replace("{schema}", quoted).replace("{now}", now)
        assert enqueue.count(counted) == 1
        self.queries["enqueue_follow_ups"] = enqueue.replace(
            _KEY_CONFLICT, "ON CONFLICT DO NOTHING"
        ).replace(counted, "")

    def __getitem__(self, name: str) -> str:
        return self.queries[name]


def migration_scripts() -> list[tuple[int, str]]:
    return load_migrations("offload.backends", "postgres_sql/migrations")


def fresh_schema_sql() -> str:
    return read_sql("offload.backends", "postgres_sql/schema.sql")


# -- plans: each operation written once ----------------------------------------


def plan_migrate(st: Statements, schema: str) -> Plan[int]:
    """Create or upgrade the schema; concurrent first users wait on an advisory lock.

    A schema already current takes no lock: every worker checks at its start, and one of
    them cut off by a partition while holding the lock would otherwise hold every later
    start until the server noticed. A migrator cut off midway loses the lock within
    MIGRATION_IDLE_S (the server ends a transaction left idle that long).
    """
    steps = migration_scripts()
    latest = steps[-1][0]
    table = f"{st.schema}.schema_version"
    found = yield ("SELECT to_regclass(%(t)s) IS NOT NULL", {"t": table})
    if found[0][0]:
        rows = yield (f"SELECT max(version) FROM {st.schema}.schema_version", {})
        if rows[0][0] == latest:
            return latest
    yield (f"SET LOCAL idle_in_transaction_session_timeout = '{MIGRATION_IDLE_S}s'", {})
    yield (f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})", {})
    yield (f"CREATE SCHEMA IF NOT EXISTS {st.schema}", {})
    yield (f"CREATE TABLE IF NOT EXISTS {st.schema}.schema_version (version integer NOT NULL)", {})
    rows = yield (f"SELECT max(version) FROM {st.schema}.schema_version", {})
    current = rows[0][0] or 0
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
        yield (st["cancel"], {"ids": ids, **st.pushing, "kept": MAX_ATTEMPTS_KEPT})
    return (yield from plan_get(st, params.ids))


def plan_retry(st: Statements, params: IdsParams) -> Plan[list[JobRecord]]:
    ids = list(params.ids)
    if ids:
        yield (st["retry"], {"ids": ids, "channel": st.channel, **st.pushing})
    return (yield from plan_get(st, params.ids))


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
        st["purge"],
        {"states": [JobState(s).value for s in params.states], "queue": params.queue},
    )
    return len(rows)


def plan_claim(st: Statements, params: ClaimParams) -> Plan[list[JobRecord]]:
    queues = list(params.queues)
    rows = yield (
        st["claim"] if len(queues) == 1 else st["claim_many_queues"],
        {"worker": params.worker, "lease_s": params.lease_s, "queues": queues,
         "queue": queues[0] if queues else None, "limit": params.limit, **st.pushing},
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


def plan_progress(st: Statements, params: ProgressParams) -> Plan[None]:
    updates = [u for u in params.updates if finite_progress(u.progress)]
    yield (
        st["progress"],
        {"ids": [u.id for u in updates], "deliveries": [u.delivery for u in updates],
         "progress": [u.progress for u in updates],
         "messages": [None if u.message is None else escape_text(u.message, nul_ok=False)
                      for u in updates], **st.pushing},
    )  # fmt: skip
    return None


def plan_reap(st: Statements, params: ReapParams) -> Plan[list[ReapedJob]]:
    rows = yield (
        st["reap_expired"],
        {
            "error": _encode(WORKER_LOST).decode(),
            "max_crashes": params.max_crashes,
            "channel": st.channel,
            **st.pushing,
            "kept": MAX_ATTEMPTS_KEPT,
        },
    )
    return [ReapedJob(id=r[0], state=JobState(r[1])) for r in rows]


def plan_rowcount(st: Statements, name: str, args: dict[str, Any]) -> Plan[int]:
    rows = yield (st[name] + " RETURNING 1", args)
    return len(rows)


def plan_prune(st: Statements, params: PruneParams) -> Plan[int]:
    """Delete jobs that ended before the horizon in bounded steps (each statement its
    own transaction), the turns handed out before it, and the marks and registered
    workers whose time is up."""
    yield (st["prune_turns"], {"before": params.finished_before})
    yield (st["prune_expired"], {})
    states = [JobState(s).value for s in params.states]
    args = {"states": states, "before": params.finished_before, "batch": PRUNE_STEP}
    deleted = 0
    while states:
        step = len((yield (st["prune"], args)))
        deleted += step
        if step < PRUNE_STEP:
            break
    return deleted


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
    check_span(params.name, "mark ttl_s", params.ttl_s)
    args = {"name": params.name, "value": params.value, "ttl_s": params.ttl_s}
    if params.expected is None:
        rows = yield (st["create_mark"], args)
    else:
        rows = yield (st["update_mark"], {**args, "expected": params.expected})
    return bool(rows)


def plan_next_ready(st: Statements, queues: Sequence[str]) -> Plan[tuple[float | None, float]]:
    rows = yield (st["next_ready"], {"queues": list(queues)})
    return rows[0][0], rows[0][1]


def plan_now(st: Statements) -> Plan[float]:
    rows = yield (st["now"], {})
    return float(rows[0][0])
