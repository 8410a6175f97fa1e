"""SQLite's read-only listings: a page of jobs for a filter, and each queue's counts."""

from __future__ import annotations

import sqlite3
from typing import Any

from offload.backends.base import Page, QueryParams, QueueStats
from offload.backends.rows import job_from_row
from offload.backends.sqlite_schema import COLUMNS, Q, _marks
from offload.states import JobState


def query_page(conn: sqlite3.Connection, params: QueryParams) -> Page:
    """One page of ``params.filter``'s matches, newest first."""
    f = params.filter
    where: list[str] = ["1=1"]
    args: list[Any] = []
    if f.states:
        where.append(f"state IN ({_marks(f.states)})")
        args += [s.value for s in f.states]
    for column, value in (("queue", f.queue), ("task", f.task), ("owner", f.owner),
                          ("batch", f.batch)):  # fmt: skip
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if params.cursor is not None:
        where.append("id < ?")
        args.append(params.cursor)
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM offload_jobs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
        [*args, params.limit + 1],
    )
    jobs = [job_from_row(r) for r in rows]
    more = len(jobs) > params.limit
    jobs = jobs[: params.limit]
    return Page(jobs=jobs, next_cursor=jobs[-1].id if more and jobs else None)


def queue_stats(conn: sqlite3.Connection, now: float) -> list[QueueStats]:
    counts: dict[str, dict[str, int]] = {}
    for queue, state, count in conn.execute(Q["stats_counts"]):
        counts.setdefault(queue, {s.value: 0 for s in JobState})[state] = count
    oldest = dict(conn.execute(Q["stats_oldest"], (now,)).fetchall())
    recent = dict(conn.execute(Q["stats_recent"], (now - 60,)).fetchall())
    return [
        QueueStats(
            queue=queue,
            counts=per_state,
            oldest_ready_age_s=(now - oldest[queue]) if queue in oldest else None,
            finished_last_minute=recent.get(queue, 0),
        )
        for queue, per_state in sorted(counts.items())
    ]
