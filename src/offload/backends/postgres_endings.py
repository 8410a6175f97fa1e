"""What a job's end sets off in PostgreSQL, prepared here and stored by the step that ends
it (``jobs_ended`` in schema.sql; ``memory_endings`` is the reference), and the
per-minute counts.

A job's follow-ups ride on its own row (``follow_ups``, NULL for most jobs) as rows ready
to insert: the function reads them only for a job that has some. A batch is one row of
``batches`` that each member's end counts down by id: nothing ever scans its members.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import msgspec

from offload.backends.base import BatchQueryParams, CountsParams, CountsQuery, PruneParams
from offload.backends.postgres_admin import NO_LOCK_WAIT
from offload.backends.postgres_plans import PRUNE_STEP, Plan, Statements, plan_prune
from offload.backends.values import check_new_jobs, check_span
from offload.records import BatchOpen, BatchRecord, FollowUp, JobRecord, MinuteCounts, NewJob

_encode = msgspec.json.encode
#: The columns the batch queries select, in order.
_BATCH_FIELDS = ("id", "total", "remaining", "created_at", "completed_at", "callback_id")
_COUNT_FIELDS = ("minute", "queue", "task", "source", "enqueued", "started", "succeeded",
                 "retried", "dead")  # fmt: skip


def _row(new: NewJob) -> dict[str, Any]:
    """``new`` as jobs_ended inserts it (jsonb_to_recordset's columns)."""
    return {
        "id": new.id, "task": new.task, "queue": new.queue,
        "payload": base64.b64encode(new.payload).decode(), "priority": new.priority,
        "max_attempts": new.max_attempts, "run_at": new.run_at, "delay_s": new.delay_s,
        "lease_s": new.lease_s, "timeout_s": new.timeout_s, "key": new.key,
        "batch": new.batch, "owner": new.owner, "meta": dict(new.meta) if new.meta else None,
        "follow_ups": _rows(new.follow_ups),
    }  # fmt: skip


def _rows(follow_ups: Sequence[FollowUp]) -> list[dict[str, Any]] | None:
    if not follow_ups:
        return None
    check_new_jobs([f.job for f in follow_ups], nul_ok=False)  # refused now, not at the end
    return [{**_row(f.job), "on": [s.value for s in f.on]} for f in follow_ups]


def follow_ups_column(new: NewJob) -> str | None:
    """The ``follow_ups`` column of ``new`` (None, the common case, costs nothing)."""
    rows = _rows(new.follow_ups)
    return None if rows is None else _encode(rows).decode()


def plan_open_batch(st: Statements, batch: BatchOpen, inserted: Sequence[JobRecord]) -> Plan[None]:
    """Open ``batch`` in its members' enqueue step: the jobs it inserted with that batch."""
    callback = batch.callback
    if callback is not None:  # stored by the step that ends the last member: checked now
        check_new_jobs([callback], nul_ok=False)
    yield (
        st["open_batch"],
        {
            "id": batch.id, "total": sum(1 for r in inserted if r.batch == batch.id),
            "callback": None if callback is None else _encode(_row(callback)).decode(),
            "callback_id": None if callback is None else callback.id,
        },
    )  # fmt: skip
    return None


def plan_batches(st: Statements, params: BatchQueryParams) -> Plan[list[BatchRecord]]:
    """The given batches (in that order), or the newest; each from its own row."""
    if params.ids:
        ids = list(dict.fromkeys(params.ids))
        by_id = {r[0]: r for r in (yield (st["batches_by_id"], {"ids": ids}))}
        rows = [by_id[i] for i in ids if i in by_id]
        if params.open_only:
            rows = [r for r in rows if r[4] is None]
        rows = rows[: params.limit]
    else:
        args = {"open_only": params.open_only, "limit": params.limit}
        rows = yield (st["batches_newest"], args)
    return [BatchRecord(**dict(zip(_BATCH_FIELDS, r, strict=True))) for r in rows]


def plan_record_counts(st: Statements, params: CountsParams) -> Plan[None]:
    check_span("counts", "counts ttl_s", params.ttl_s)
    rows = list(params.rows)
    if not rows:
        return None
    yield (NO_LOCK_WAIT, {})
    args: dict[str, Any] = {
        name: [getattr(r, field) for r in rows]
        for name, field in (
            ("minutes", "minute"), ("queues", "queue"), ("tasks", "task"),
            ("sources", "source"), ("enqueued", "enqueued"), ("started", "started"),
            ("succeeded", "succeeded"), ("retried", "retried"), ("dead", "dead"),
        )
    }  # fmt: skip
    args["wait_ms"] = [_encode(r.wait_ms).decode() for r in rows]
    args["run_ms"] = [_encode(r.run_ms).decode() for r in rows]
    yield (st["record_counts"], {**args, "ttl_s": params.ttl_s})
    return None


def plan_read_counts(st: Statements, query: CountsQuery) -> Plan[list[MinuteCounts]]:
    """The unexpired rows of the minutes asked, by minute, queue, task and source; a row
    that does not decode (written by hand) is left out."""
    rows = yield (
        st["read_counts"],
        {"since": query.since_minute, "until": query.until_minute, "queue": query.queue,
         "task": query.task},
    )  # fmt: skip
    out = []
    for row in rows:
        try:
            fields: dict[str, Any] = dict(zip(_COUNT_FIELDS, row[:9], strict=True))
            for name, value in (("wait_ms", row[9]), ("run_ms", row[10])):
                fields[name] = [] if value is None else msgspec.json.decode(value)
            out.append(msgspec.convert(fields, MinuteCounts))
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError):
            continue
    return out


def plan_prune_endings(
    st: Statements, completed_before: float, counts_before: float | None
) -> Plan[None]:
    """Drop batches completed before the horizon, count rows past their lifetime and (if
    given) of minutes before ``counts_before``: bounded steps, each its own transaction."""
    for name, args in (
        ("prune_batches", {"before": completed_before}),
        ("prune_counts", {"before_minute": -1 if counts_before is None
                          else int(counts_before // 60)}),
    ):  # fmt: skip
        while len((yield (st[name], {**args, "batch": PRUNE_STEP}))) >= PRUNE_STEP:
            pass
    return None


def plan_prune_all(st: Statements, params: PruneParams) -> Plan[int]:
    """``plan_prune``, then the batches and count rows whose time is up."""
    deleted = yield from plan_prune(st, params)
    yield from plan_prune_endings(st, params.finished_before, params.counts_before)
    return deleted
