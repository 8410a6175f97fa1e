"""SQLite's per-minute counts: the store's own enqueue rows, which add up in each enqueue
step, and the workers' rows, each replacing the same source's earlier one."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from offload.backends.base import CountsQuery
from offload.backends.sqlite_connect import Connections
from offload.backends.sqlite_schema import Q
from offload.records import ENQUEUE_COUNTS_TTL_S, JobRecord, MinuteCounts

_encode = msgspec.json.encode
#: The columns ``read_counts`` selects before the two histograms, in order.
_FIELDS = ("minute", "queue", "task", "source", "enqueued", "started", "succeeded", "retried",
           "dead")  # fmt: skip


def add_enqueued(conn: sqlite3.Connection, stored: Sequence[JobRecord], now: float) -> None:
    """+1 ``enqueued`` per job stored, one row per (queue, task): one statement a step."""
    minute, expires_at = int(now // 60), now + ENQUEUE_COUNTS_TTL_S
    if len(stored) == 1:  # the common call, without grouping
        conn.execute(Q["add_enqueued"], (minute, stored[0].queue, stored[0].task, 1, expires_at))
        return
    groups: dict[tuple[str, str], int] = {}
    for job in stored:
        group = (job.queue, job.task)
        groups[group] = groups.get(group, 0) + 1
    conn.executemany(
        Q["add_enqueued"], [(minute, q, t, n, expires_at) for (q, t), n in groups.items()]
    )


def record_counts(
    conn: sqlite3.Connection, rows: Sequence[MinuteCounts], ttl_s: float, now: float
) -> None:
    conn.executemany(
        Q["record_counts"],
        [
            (
                r.minute, r.queue, r.task, r.source, r.enqueued, r.started, r.succeeded,
                r.retried, r.dead, _encode(r.wait_ms).decode(), _encode(r.run_ms).decode(),
                now + ttl_s,
            )
            for r in rows
        ],
    )  # fmt: skip


def read_counts(conn: sqlite3.Connection, query: CountsQuery, now: float) -> list[MinuteCounts]:
    """The unexpired rows of the minutes asked, by minute, queue, task and source; a row
    that does not decode (written by hand) is left out."""
    args = (query.since_minute, query.until_minute, now, query.queue, query.queue,
            query.task, query.task)  # fmt: skip
    out = []
    for row in conn.execute(Q["read_counts"], args):
        try:
            out.append(_row(row))
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError):
            continue
    return out


def _row(row: tuple[Any, ...]) -> MinuteCounts:
    fields: dict[str, Any] = dict(zip(_FIELDS, row[:9], strict=True))
    for name, value in (("wait_ms", row[9]), ("run_ms", row[10])):
        fields[name] = [] if value is None else msgspec.json.decode(value)
    return msgspec.convert(fields, MinuteCounts)


def prune_counts(db: Connections, now: float, counts_before: float | None, step: int) -> None:
    """Drop rows past their lifetime, and of minutes before ``counts_before`` (if given),
    about ``step`` rows per transaction (rows that tie on the bound go together)."""
    steps = [(Q["prune_counts_expired"], now)]
    if counts_before is not None:
        steps.append((Q["prune_counts_before"], int(counts_before // 60)))
    for query, bound in steps:
        while True:
            with db.write() as conn:
                deleted = conn.execute(query, (bound, step - 1, bound)).rowcount
            if deleted < step:
                break
