"""The SQL expressions PostgreSQL's statements share, written out into each where
queries.sql names them in braces (``expand``): events built and pushed, the listener
probe, the search text, an attempt appended to the history, what a job's end sets off.
"""

from __future__ import annotations

import re

# Expressions the statements share, written out into each (queries.sql names them in braces)
# rather than kept as SQL functions: the planner would parse a function's body at every
# planning to inline it, and claims and finishes are planned often.

#: One JobEvent as compact JSON, from a row ``e`` of its fields: event_wire's field names
#: with ``kind`` first (push_events_split cuts a step there), a NULL field left out (the
#: decoder's default; a batch's progress has no state: null). Concatenation costs half of
#: json_build_object and is a third shorter on the wire; to_json escapes the text. Every
#: operand of || is text: text || anything else is a SQL function (textanycat) that the
#: planner parses at every planning.
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


#: +1 ``enqueued`` per job an enqueue stored, in per-minute rows (queue, task) of this
#: transaction's own (source ``enqueue:<txid>``; read_counts adds them up): an insert, not
#: an update of a shared row, so enqueues in callers' long transactions never wait on, or
#: deadlock with, each other. ENQUEUE_COUNTS_TTL_S keeps them; prune takes them away.
COUNT_ENQUEUED = """
counted AS (
    INSERT INTO {schema}.counts AS c (minute, queue, task, source, enqueued, expires_at)
    SELECT floor(date_part('epoch', {now}) / 60)::bigint, s.queue, s.task,
           'enqueue:' || txid_current()::text, count(*),
           {now} + make_interval(secs => %(counts_ttl_s)s::float8)
    FROM stored AS s GROUP BY s.queue, s.task
    ON CONFLICT (minute, queue, task, source) DO UPDATE
    SET enqueued = c.enqueued + excluded.enqueued, expires_at = excluded.expires_at
),"""


def expand(text: str) -> str:
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
