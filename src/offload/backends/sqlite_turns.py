"""What one SQLite enqueue writes inside its transaction: new rows (with the follow-ups
they carry, stored when they end) and fair turns."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from offload.backends.rows import job_from_row
from offload.backends.sqlite_schema import Q, _in
from offload.backends.values import check_new_jobs
from offload.records import FAIR_STEP_S, FollowUp, JobRecord, NewJob
from offload.states import JobState


class Turns:
    """The turns one enqueue hands to fair jobs (see NewJob.fair), inside its transaction.

    Each (queue, priority) head and each owner's last turn is read once, then kept here as
    the batch goes on; the owners' new last turns are written at the end.
    """

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self._conn = conn
        self._now = now
        self._heads: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, str], float] = {}  # the turns taken in this batch

    def take(self, queue: str, priority: int, owner: str | None) -> float:
        group = (queue, priority)
        head = self._heads.get(group)
        if head is None:
            row = self._conn.execute(Q["fair_head"], (queue, priority, self._now)).fetchone()
            head = self._heads[group] = self._now if row is None else row[0]
        tenant = (queue, owner or "")
        last = self._last.get(tenant)
        if last is None:
            row = self._conn.execute(Q["last_turn"], tenant).fetchone()
            last = None if row is None else row[0]
        turn = head if last is None else max(head, last + FAIR_STEP_S)
        self._last[tenant] = turn
        return turn

    def saw(self, queue: str, priority: int, run_at: float) -> None:
        """A job of this batch that is ready now: it may be the new head of its priority."""
        group = (queue, priority)
        if group in self._heads:
            self._heads[group] = min(self._heads[group], run_at)

    def save(self) -> None:
        self._conn.executemany(Q["save_turn"], [(q, o, t) for (q, o), t in self._last.items()])


def record_of_new(new: NewJob, now: float) -> JobRecord:
    run_at = new.run_at if new.run_at is not None else now + new.delay_s
    return JobRecord(
        id=new.id,
        task=new.task,
        queue=new.queue,
        state=JobState.SCHEDULED if run_at > now else JobState.QUEUED,
        payload=new.payload,
        priority=new.priority,
        max_attempts=new.max_attempts,
        run_at=run_at,
        lease_s=new.lease_s,
        timeout_s=new.timeout_s,
        created_at=now,
        key=new.key,
        batch=new.batch,
        owner=new.owner,
        meta=dict(new.meta),
    )


def store_new(
    conn: sqlite3.Connection,
    jobs: Sequence[NewJob],
    now: float,
    *,
    skip_stored: bool = False,
    stored: list[JobRecord] | None = None,
) -> list[JobRecord]:
    """Insert ``jobs`` in the caller's transaction; a held unique key returns its holder.

    ``skip_stored`` (a finish's follow-ups) skips a job whose id is already stored
    instead of failing the transaction. ``stored`` collects the jobs really inserted
    (not the holders), whose events the step logs.
    """
    if skip_stored:
        ids = list(dict.fromkeys(new.id for new in jobs))
        known = {r[0] for r in conn.execute(_in(Q["stored_ids"], ids), ids)}
        fresh = {new.id: new for new in jobs if new.id not in known}
        jobs = list(fresh.values())
    out: list[JobRecord] = []
    rows: list[tuple[Any, ...]] = []
    turns = Turns(conn, now) if any(new.fair for new in jobs) else None
    for new in jobs:
        if new.key is not None:
            held = conn.execute(Q["live_key"], (new.key,)).fetchone()
            if held is not None:
                out.append(job_from_row(held))
                continue
        record = record_of_new(new, now)
        if turns is not None and record.run_at <= now:
            if new.fair:
                record.run_at = turns.take(new.queue, new.priority, new.owner)
                if record.run_at > now:
                    record.state = JobState.SCHEDULED
            else:
                turns.saw(new.queue, new.priority, record.run_at)
        out.append(record)
        if stored is not None:
            stored.append(record)
        rows.append(
            (
                record.id, record.task, record.queue, record.state.value, record.payload,
                record.priority, record.max_attempts, record.run_at, record.lease_s,
                record.timeout_s, record.created_at, record.key, record.batch,
                record.owner, _encode(record.meta) if record.meta else None,
                None if not new.follow_ups else follow_ups_column(new),
            )
        )  # fmt: skip
        if new.key is not None and rows:  # a later job in this batch may carry the same key
            conn.executemany(Q["insert"], rows)
            rows = []
    if rows:
        conn.executemany(Q["insert"], rows)
    if turns is not None:
        turns.save()
    return out


def follow_ups_column(new: NewJob) -> bytes:
    """``new``'s follow-ups as its row keeps them. Each is checked now, at any depth
    (``ValueRejected``): the step that ends ``new`` stores them and must not fail then."""
    checked(new.follow_ups)
    return _encode(new.follow_ups)


def checked(follow_ups: Sequence[FollowUp]) -> None:
    check_new_jobs([f.job for f in follow_ups])
    for f in follow_ups:
        checked(f.job.follow_ups)


_encode = msgspec.json.encode
