"""Plans for what the Redis store keeps beside its jobs: batch records, counted down by the
scripts that end their members (endings.lua), and per-minute counts."""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from offload.backends.base import BatchQueryParams, CountsParams, CountsQuery, ValueRejected
from offload.backends.redis_codec import encode, num, opt, text
from offload.backends.redis_plans import Plan, Script
from offload.backends.values import check_span
from offload.records import BatchRecord, MinuteCounts

log = logging.getLogger("offload.redis")
#: A worker's row as record_counts.lua keeps it: until (store's clock), then the row.
_decode_row = msgspec.json.Decoder(tuple[float, MinuteCounts]).decode
#: The field of the store's own enqueued count: its queue and task.
_decode_names = msgspec.json.Decoder(list[str]).decode
#: Minutes are scores of a sorted set (doubles): beyond 2**53 they would not be exact.
_MAX_MINUTE = 2**53


def plan_batches(params: BatchQueryParams) -> Plan[list[BatchRecord]]:
    if params.limit <= 0:
        return []
    ids = [text(i, i, "batch id") for i in params.ids]
    reply = yield Script("batches", ["1" if params.open_only else "", params.limit, *ids])
    out = []
    for row in reply:
        try:
            out.append(_batch(row))
        except (ValueError, TypeError) as exc:  # a record edited by hand: left out
            log.warning("a batch record does not decode (%s); left out", exc)
    return out


def _batch(row: list[Any]) -> BatchRecord:
    batch_id, total, remaining, created_at, completed_at, callback_id = row
    return BatchRecord(
        id=batch_id.decode(),
        total=int(total),
        remaining=int(remaining),
        created_at=float(created_at),
        completed_at=None if completed_at is None else float(completed_at),
        callback_id=None if callback_id is None else callback_id.decode(),
    )


def _minute(minute: int) -> str:
    if not -_MAX_MINUTE <= minute <= _MAX_MINUTE:
        raise ValueRejected(f"minute {minute!r} is out of range")
    return str(int(minute))


def plan_record_counts(params: CountsParams) -> Plan[None]:
    check_span("counts", "counts ttl_s", params.ttl_s)
    if not params.rows:
        return None
    args: list[Any] = [num(params.ttl_s)]
    for row in params.rows:
        args += (
            _minute(row.minute), text(row.queue, "", "counts queue"),
            text(row.task, "", "counts task"), text(row.source, "", "counts source"),
            encode(row),
        )  # fmt: skip
    yield Script("record_counts", args)
    return None


def plan_read_counts(params: CountsQuery) -> Plan[list[MinuteCounts]]:
    since, until = _minute(params.since_minute), _minute(params.until_minute)
    queue, task = opt(params.queue, "", "queue"), opt(params.task, "", "task")
    out = []
    for minute, field, value in (yield Script("read_counts", [since, until, queue, task])):
        try:
            names = _decode_names(field)
            if len(names) == 2:  # the store's own count of the jobs enqueued
                out.append(MinuteCounts(minute=int(minute), queue=names[0], task=names[1],
                                        source="enqueue", enqueued=int(value)))  # fmt: skip
            else:
                out.append(_decode_row(value)[1])
        except (ValueError, msgspec.DecodeError) as exc:  # written by hand: left out
            log.warning("a per-minute count does not decode (%s); left out", exc)
    out.sort(key=lambda r: (r.minute, r.queue, r.task, r.source))
    return out
