"""PostgreSQL plans: each operation written once, as a generator of SQL statements.

A plan yields ``(sql, params)`` and receives the statement's rows; the sync and the
async runner (``postgres_sync``, ``postgres``) drive the same plans, so the two paths
cannot drift. Leases and due times use the database's clock.
"""

from __future__ import annotations

import hashlib
import re
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
# Expressions the statements share, written out into each (queries.sql names them in braces)
# rather than kept as SQL functions: the planner would parse a function's body at every
# planning to inline it, and claims and finishes are planned often.

#: One JobEvent as compact JSON, from a row ``e`` of its fields: event_wire's field names
#: with ``kind`` first (push_events_split cuts a step there), a NULL field left out (the
#: decoder's default). Concatenation costs half of json_build_object and is a third
#: shorter on the wire; to_json escapes the text. Every operand of || is text: text ||
#: anything else is a SQL function (textanycat) that the planner parses at every planning.
EVENT_JSON = (
    """'{"kind":' || to_json(e.kind)::text || ',"id":' || to_json(e.id)::text"""
    """ || ',"queue":' || to_json(e.queue)::text"""
    """ || ',"state":' || coalesce(to_json(e.state)::text, 'null')"""
    """ || ',"task":' || to_json(e.task)::text"""
    """ || coalesce(',"owner":' || to_json(e.owner)::text, '')"""
    """ || coalesce(',"batch":' || to_json(e.batch)::text, '')"""
    """ || ',"attempt":' || e.attempt::text || ',"progress":' || e.progress::text"""
    """ || coalesce(',"message":' || to_json(e.message)::text, '')"""
    """ || coalesce(',"worker":' || to_json(e.worker)::text, '') || ',"at":' || e.at::text || '}'"""
)
#: NOTIFY a step's events, ``p.body`` (event objects joined by commas, never empty), as
#: one JSON array on the events channel; a step past PostgreSQL's payload limit (8000
#: bytes) is cut into several by push_events_split (schema.sql).
PUSH = (
    "CASE WHEN octet_length(p.body) <= 7997 THEN pg_notify(%(events)s, '[' || p.body || ']')"
    " ELSE {schema}.push_events_split(%(events)s, p.body) END"
)
#: A step that workers must hear (a person's cancel or delete, a publish: rare) pushes
#: its events always on the control channel, where control-kind subscriptions (every
#: worker's) listen without counting as listeners, and on the events channel while
#: someone listens there.
PUSH_CONTROL = (
    "CASE WHEN octet_length(p.body) <= 7997 THEN pg_notify(%(control)s, '[' || p.body || ']')"
    " ELSE {schema}.push_events_split(%(control)s, p.body) END,"
    " CASE WHEN {listened} THEN " + PUSH + " END"
)
#: True while some event stream is subscribed: each holds a shared advisory lock on the
#: schema's key (PgEventStream, released with its connection however it ends). The step
#: probes it with an exclusive lock taken and given back at once (never held into a
#: caller's transaction); if that is refused, someone listens (or another step probes
#: this very moment, and pushes for nothing). A step that runs after a subscriber entered
#: sees its lock; without subscribers, no event is built and nothing is sent.
LISTENED = (
    "(SELECT CASE WHEN pg_try_advisory_lock(%(listened)s::int, 0)"
    " THEN NOT pg_advisory_unlock(%(listened)s::int, 0) ELSE true END)"
)
#: What JobFilter.text searches, from a stored job ``s``: id, task, owner and payload, one
#: per line, the payload in bytea's escape format (bytes that need not be UTF-8, never an
#: error). The 0005 migration writes the same for the jobs it finds.
SEARCH_TEXT = (
    r"s.id || E'\n' || s.task || E'\n' || coalesce(s.owner, '') || E'\n'"
    " || coalesce(encode(s.payload, 'escape'), '')"
)
#: ``j.attempts`` with the attempt ``j`` is ending appended (SET reads the row as it was),
#: as compact JSON text: no parse into jsonb and back. A value that is not a non-empty
#: array (written by hand) starts over; at ``kept`` attempts the oldest goes.
WITH_ATTEMPT = (
    "(CASE least(coalesce(CASE WHEN json_typeof(j.attempts) = 'array'"
    " THEN json_array_length(j.attempts) END, 0), %(kept)s::int)"
    " WHEN 0 THEN '['"
    " WHEN %(kept)s::int THEN {schema}.attempts_but_oldest(j.attempts, %(kept)s::int)"
    " ELSE left(rtrim(j.attempts::text), -1) || ',' END"
    """ || '{"number":' || j.attempt::text"""
    """ || coalesce(',"worker":' || to_json(j.worker)::text, '')"""
    """ || coalesce(',"started_at":' || date_part('epoch', j.started_at)::text, '')"""
    """ || ',"ended_at":' || date_part('epoch', {now})::text"""
    """ || ',"outcome":' || to_json((OUTCOME)::text)::text"""
    """ || coalesce(',"error":' || (ERROR)::text, '') || '}]')::json"""
)
_WITH_ATTEMPT_CALL = re.compile(r"\{with_attempt\((.*?);(.*?)\)\}", re.S)
#: ``{ended(ROWS AS r; KEY; CONDITION)}``: a CTE ``ended``, the events of what the rows
#: ``r`` a step ended set off (jobs_ended in schema.sql stores it), for the rows that
#: meet CONDITION and have follow-ups or a batch only: most rows have neither, and for
#: them the function is not called at all. ROWS must return id, state, batch, follow_ups.
#: MATERIALIZED: it runs once, and the statement reads it whether or not anyone listens.
ENDED = (
    "ended AS MATERIALIZED (SELECT x.* FROM (SELECT array_agg(r.id ORDER BY @KEY) AS ids,"
    " array_agg(r.state ORDER BY @KEY) AS states, array_agg(r.batch ORDER BY @KEY) AS batches,"
    " array_agg(r.follow_ups ORDER BY @KEY) AS follow_ups FROM @ROWS"
    " WHERE (@CONDITION) AND (r.follow_ups IS NOT NULL OR r.batch IS NOT NULL)"
    " HAVING count(*) > 0) AS a CROSS JOIN LATERAL {schema}.jobs_ended(a.ids, a.states,"
    " a.batches, a.follow_ups, {now}, %(channel)s) AS x),"
)
_ENDED_CALL = re.compile(r"\{ended\((.*?) AS (\w+);(.*?);(.*?)\)\}", re.S)


def _ended(m: re.Match[str]) -> str:
    rows, alias, order, condition = m[1].strip(), m[2], m[3].strip(), m[4].strip()
    return (
        ENDED.replace("@ROWS", f"{rows} AS r")
        .replace("@KEY", order.replace(f"{alias}.", "r."))
        .replace("@CONDITION", condition.replace(f"{alias}.", "r."))
    )


#: +1 ``enqueued`` per job an enqueue stored, in its per-minute row (queue, task): one
#: upsert a step, adding to the row (ENQUEUE_COUNTS_TTL_S keeps it).
COUNT_ENQUEUED = """
counted AS (
    INSERT INTO {schema}.counts AS c (minute, queue, task, source, enqueued, expires_at)
    SELECT floor(date_part('epoch', {now}) / 60)::bigint, s.queue, s.task, 'enqueue', count(*),
           {now} + make_interval(secs => %(counts_ttl_s)s::float8)
    FROM stored AS s GROUP BY s.queue, s.task
    ON CONFLICT (minute, queue, task, source) DO UPDATE
    SET enqueued = c.enqueued + excluded.enqueued, expires_at = excluded.expires_at
),"""


def _expand(text: str) -> str:
    """The shared expressions written out (before {schema} and {now} are)."""
    text = _ENDED_CALL.sub(_ended, text)
    text = _WITH_ATTEMPT_CALL.sub(
        lambda m: WITH_ATTEMPT.replace("OUTCOME", m[1].strip()).replace("ERROR", m[2].strip()),
        text,
    )
    for name, expression in (
        ("{event}", EVENT_JSON), ("{push_control}", PUSH_CONTROL), ("{push}", PUSH),
        ("{listened}", LISTENED),
        ("{search_text}", SEARCH_TEXT), ("{count_enqueued}", COUNT_ENQUEUED),
    ):  # fmt: skip
        text = text.replace(name, expression)
    return text


_encode = msgspec.json.encode
_KEY_CONFLICT = (
    "ON CONFLICT (key) WHERE key IS NOT NULL AND state IN ('scheduled', 'queued', 'running') "
    "DO NOTHING"
)
#: Rows one prune statement deletes.
PRUNE_STEP = 1000
SCHEMA_LOCK_KEY = 0x0FF10AD  # pg_advisory_xact_lock key that serialises migrations


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
            name: _expand(text)
            .replace("{schema}", quoted)
            .replace("{cols}", COLUMNS)
            .replace("{now}", now)
            for name, text in load_queries("offload.backends", "postgres_sql/queries.sql").items()
        }
        # a finish's follow-ups: the plain enqueue, but an id already stored skips its job
        enqueue = self.queries["enqueue"]
        assert enqueue.count(_KEY_CONFLICT) == 1
        # ... and counts nothing: it is no enqueue (a step that ends its parent stores it)
        counted = _expand("{count_enqueued}").replace("{schema}", quoted).replace("{now}", now)
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
