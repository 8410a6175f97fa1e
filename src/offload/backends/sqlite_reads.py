"""SQLite's read-only listings: a page of jobs for a filter, how many match, and each
queue's counts."""

from __future__ import annotations

import sqlite3
from typing import Any

from offload.backends.base import JobFilter, Page, QueryParams, QueueStats
from offload.backends.rows import job_from_row
from offload.backends.sqlite_schema import COLUMNS, Q, _marks
from offload.states import JobState

#: Where free text is looked for: the arguments' JSON is a BLOB, which LIKE never matches.
_TEXT_COLUMNS = ("id", "task", "owner", "CAST(payload AS TEXT)")


def filter_where(f: JobFilter) -> tuple[str, list[Any]]:
    """``f`` as a WHERE clause and its arguments (values are always bound, never spliced).

    Free text is a LIKE with its wildcards escaped: case-insensitive for ASCII letters
    only (SQLite's LIKE folds no other case), and no index can serve it, so a page scans
    the newest jobs until it is full and a count scans every job the other fields leave.
    The created-at range uses its index.
    """
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
    if f.created_after is not None:
        where.append("created_at >= ?")
        args.append(f.created_after)
    if f.created_before is not None:
        where.append("created_at < ?")
        args.append(f.created_before)
    if f.text is not None:
        pattern = "%" + escape_like(f.text) + "%"
        where.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in _TEXT_COLUMNS) + ")")
        args += [pattern] * len(_TEXT_COLUMNS)
    return " AND ".join(where), args


def escape_like(text: str) -> str:
    """``text`` matched literally by LIKE ... ESCAPE '\\'."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def query_page(conn: sqlite3.Connection, params: QueryParams) -> Page:
    """One page of ``params.filter``'s matches, newest first."""
    where, args = filter_where(params.filter)
    if params.cursor is not None:
        where += " AND id < ?"
        args.append(params.cursor)
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM offload_jobs WHERE {where} ORDER BY id DESC LIMIT ?",
        [*args, params.limit + 1],
    )
    jobs = [job_from_row(r) for r in rows]
    more = len(jobs) > params.limit
    jobs = jobs[: params.limit]
    return Page(jobs=jobs, next_cursor=jobs[-1].id if more and jobs else None)


def count_jobs(conn: sqlite3.Connection, f: JobFilter) -> int:
    """How many jobs ``query_page`` would return over all its pages."""
    where, args = filter_where(f)
    return int(conn.execute(f"SELECT count(*) FROM offload_jobs WHERE {where}", args).fetchone()[0])


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
