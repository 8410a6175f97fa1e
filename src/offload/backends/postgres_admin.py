"""PostgreSQL steps for the tools people use: find jobs (a page, a count) by filter, forget
them by id, publish events, and the worker registry.

``JobFilter.text`` and the ``created_at`` range are matched against each job's
``job_search`` row (schema.sql), by index: its creation time, and its id, task, owner and
payload, case-insensitively, through a pg_trgm index where the extension exists (without
it, every row is read). The payload is bytes, held there in bytea's escape format, so the
needle is matched twice when that format writes it differently (non-ASCII, a backslash);
non-ASCII letters in a payload match in their own case only. The needle only ever travels
as a parameter, with LIKE's ``%``, ``_`` and ``\\`` escaped: it is taken literally.
"""

from __future__ import annotations

from typing import Any

import msgspec

from offload.backends.base import (
    CountParams,
    IdsParams,
    JobFilter,
    Page,
    PublishParams,
    QueryParams,
    WorkerBeatParams,
)
from offload.backends.postgres_plans import COLUMNS, Plan, Statements
from offload.backends.rows import job_from_row
from offload.backends.values import check_span, escape_text
from offload.records import WorkerInfo
from offload.states import JobState

_encode = msgspec.json.encode
_decode_worker = msgspec.json.Decoder(WorkerInfo).decode


def like_pattern(text: str) -> str:
    """``%text%`` for ILIKE, with LIKE's own characters escaped (backslash is its escape)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def escape_format(data: bytes) -> str:
    """``data`` as ``encode(data, 'escape')`` writes it: NUL and bytes >= 0x80 as ``\\ooo``,
    a backslash doubled, the rest as is."""
    if data.isascii() and b"\\" not in data and b"\x00" not in data:
        return data.decode()
    out = []
    for byte in data:
        if byte == 0x5C:
            out.append("\\\\")
        elif byte == 0 or byte >= 0x80:
            out.append(f"\\{byte:03o}")
        else:
            out.append(chr(byte))
    return "".join(out)


def filter_sql(st: Statements, f: JobFilter, args: dict[str, Any]) -> list[str]:
    """The conditions of ``f`` (ANDed), their parameters added to ``args``."""
    where = ["TRUE"]
    if f.states:
        where.append("state = ANY(%(states)s::text[])")
        args["states"] = [JobState(s).value for s in f.states]
    for column in ("queue", "task", "owner", "batch"):
        value = getattr(f, column)
        if value is not None:
            where.append(f"{column} = %({column})s")
            args[column] = value
    found = []
    if f.created_after is not None:
        found.append("s.created_at >= to_timestamp(%(created_after)s::float8)")
        args["created_after"] = f.created_after
    if f.created_before is not None:
        found.append("s.created_at < to_timestamp(%(created_before)s::float8)")
        args["created_before"] = f.created_before
    if f.text is not None:
        args["text"] = like_pattern(escape_text(f.text, nul_ok=False))
        args["text_bytes"] = like_pattern(escape_format(f.text.encode("utf-8", "surrogatepass")))
        if args["text"] == args["text_bytes"]:
            found.append("s.body ILIKE %(text)s")
        else:
            found.append("(s.body ILIKE %(text)s OR s.body ILIKE %(text_bytes)s)")
        if f.text_skips:  # their arguments are not searched: only their id, task and owner
            args["text_skips"] = list(f.text_skips)
            args["text_plain"] = like_pattern(f.text.replace("\x00", ""))
            where.append(
                "(task <> ALL(%(text_skips)s::text[]) OR id ILIKE %(text_plain)s"
                " OR task ILIKE %(text_plain)s OR coalesce(owner, '') ILIKE %(text_plain)s)"
            )
    if found:
        where.append(
            f"id IN (SELECT s.id FROM {st.schema}.job_search AS s WHERE {' AND '.join(found)})"
        )
    return where


def plan_query(st: Statements, params: QueryParams) -> Plan[Page]:
    args: dict[str, Any] = {"limit": params.limit + 1}
    where = filter_sql(st, params.filter, args)
    up = params.oldest_first
    if params.cursor is not None:
        where.append("id > %(cursor)s" if up else "id < %(cursor)s")
        args["cursor"] = params.cursor
    rows = yield (
        f"SELECT {COLUMNS} FROM {st.schema}.jobs WHERE {' AND '.join(where)} "
        f"ORDER BY id {'ASC' if up else 'DESC'} LIMIT %(limit)s",
        args,
    )
    jobs = [job_from_row(r) for r in rows]
    more = len(jobs) > params.limit
    jobs = jobs[: params.limit]
    return Page(jobs=jobs, next_cursor=jobs[-1].id if more and jobs else None)


def plan_count(st: Statements, params: CountParams) -> Plan[int]:
    args: dict[str, Any] = {}
    where = filter_sql(st, params.filter, args)
    rows = yield (f"SELECT count(*) FROM {st.schema}.jobs WHERE {' AND '.join(where)}", args)
    return int(rows[0][0])


def plan_delete(st: Statements, params: IdsParams) -> Plan[list[str]]:
    """Forget the jobs that are not running (each DELETED to subscribers): the ids gone, in
    the order given, once each."""
    ids = list(dict.fromkeys(params.ids))
    if not ids:
        return []
    rows = yield (st["delete"], {"ids": ids, **st.pushing})
    gone = {r[0] for r in rows}
    return [i for i in ids if i in gone]


def plan_publish(st: Statements, params: PublishParams) -> Plan[None]:
    """The events as given, each object's keys in JobEvent's order (``kind`` first, which
    ``push_events_split`` relies on to cut a long step between two events)."""
    if params.events:
        body = _encode(list(params.events)).decode()[1:-1]
        yield (st["publish"], {**st.pushing, "body": body})
    return None


#: The registry and the counts are for people: their writes never wait on a row lock. A
#: write whose connection went silent mid-transaction leaves the server holding that
#: row's lock until it notices (a partition keeps TCP open); waiting on it would hold the
#: worker for the whole call deadline.
NO_LOCK_WAIT = "SET LOCAL lock_timeout = '1s'"


def plan_beat_worker(st: Statements, params: WorkerBeatParams) -> Plan[None]:
    check_span(params.worker.id, "worker ttl_s", params.ttl_s)
    info = _encode(params.worker).decode()
    yield (NO_LOCK_WAIT, {})
    yield (st["beat_worker"], {"id": params.worker.id, "info": info, "ttl_s": params.ttl_s})
    return None


def plan_remove_workers(st: Statements, params: IdsParams) -> Plan[None]:
    ids = list(params.ids)
    if ids:
        yield (NO_LOCK_WAIT, {})
        yield (st["remove_workers"], {"ids": ids})
    return None


def plan_workers(st: Statements) -> Plan[list[WorkerInfo]]:
    """The live workers by id; an entry another version wrote that does not decode is
    left out (the registry is for people to read, not for correctness)."""
    out = []
    for info, last_seen in (yield (st["workers"], {})):
        try:
            worker = _decode_worker(info)
        except msgspec.DecodeError:
            continue
        out.append(msgspec.structs.replace(worker, last_seen=last_seen))
    return sorted(out, key=lambda w: w.id)
