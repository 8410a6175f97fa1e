"""SQLite only: what a job's end sets off, on the paths the conformance suite does not
take: a finish by a process that did not claim the job (it reads the row), rows written
by another version or by hand, an old database upgraded, and prune in bounded steps."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from offload.backends.base import (
    BatchQueryParams,
    ClaimParams,
    CountsParams,
    CountsQuery,
    EnqueueParams,
    FinishParams,
    IdsParams,
    Outcome,
    OutcomeKind,
    ValueRejected,
)
from offload.backends.sqlite import SqliteStore, migrations
from offload.backends.sqlite_counts import prune_counts
from offload.backends.sqlite_schema import _statements
from offload.ids import IdGenerator
from offload.records import BatchOpen, EventKind, FollowUp, MinuteCounts, NewJob
from offload.states import JobState

new_id = IdGenerator()
START = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _job(**fields: object) -> NewJob:
    fields.setdefault("queue", "q")
    return NewJob(id=new_id(), task="t", payload=b"[]", **fields)  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "offload.db")


@pytest.fixture
def store(path: str) -> Iterator[SqliteStore]:
    opened = SqliteStore(path)
    yield opened
    opened.close()


def _raw(path: str, sql: str, *args: object) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(sql, args)
    finally:
        conn.close()


def _finish(store: SqliteStore, job_id: str, delivery: int, kind: OutcomeKind) -> list[str]:
    outcome = Outcome(id=job_id, delivery=delivery, kind=kind)
    return store.finish(FinishParams(outcomes=[outcome])).rejected


def _ids(store: SqliteStore, *ids: str) -> list[str]:
    return sorted(j.id for j in store.get(IdsParams(ids=list(ids))))


def test_a_finish_with_nobody_listening_stores_what_it_sets_off_and_logs_no_event(
    store: SqliteStore,
) -> None:
    """A store nobody subscribes to builds and logs no event for a claim or a finish
    (their cost was a fifth of a drain), yet every follow-up and batch count is stored;
    a control event (a cancel, which workers follow) is logged all the same."""
    after = _job(queue="after")
    callback = _job(queue="callbacks")
    parent = _job(batch="b", follow_ups=(FollowUp(on=(JobState.SUCCEEDED,), job=after),))
    plain = _job(batch="b")
    store.enqueue(EnqueueParams(jobs=[parent, plain], batch=BatchOpen(id="b", callback=callback)))
    claimed = store.claim(ClaimParams(queues=["q"], limit=2, worker="w", lease_s=30))
    by_id = {j.id: j for j in claimed}
    assert _finish(store, parent.id, by_id[parent.id].delivery, OutcomeKind.SUCCEEDED) == []
    assert _ids(store, after.id, callback.id) == [after.id]
    (batch,) = store.batches(BatchQueryParams(ids=["b"]))
    assert (batch.remaining, batch.completed_at) == (1, None)  # plain still runs
    assert store.read_events(0, 10) == []
    store.cancel(IdsParams(ids=[plain.id]))
    kinds = [(e.kind, e.id) for _, events in store.read_events(0, 10) for e in events]
    assert kinds == [(EventKind.CANCELLED, plain.id)]
    (batch,) = store.batches(BatchQueryParams(ids=["b"]))
    assert batch.remaining == 0 and batch.completed_at is not None
    assert _ids(store, callback.id) == [callback.id]


def test_a_finish_by_another_process_reads_the_follow_ups_and_batch_from_the_row(
    store: SqliteStore, path: str
) -> None:
    store.listen(1e12)  # its events are checked below
    after = _job(queue="after")
    callback = _job(queue="callbacks")
    parent = _job(batch="b", follow_ups=(FollowUp(on=(JobState.SUCCEEDED,), job=after),))
    store.enqueue(EnqueueParams(jobs=[parent], batch=BatchOpen(id="b", callback=callback)))
    (job,) = store.claim(ClaimParams(queues=["q"], limit=1, worker="w", lease_s=30))
    other = SqliteStore(path)  # holds no claim: it reads what the finish needs
    try:
        assert _finish(other, job.id, job.delivery, OutcomeKind.SUCCEEDED) == []
    finally:
        other.close()
    assert _ids(store, after.id, callback.id) == sorted([after.id, callback.id])
    (batch,) = store.batches(BatchQueryParams(ids=["b"]))
    assert (batch.remaining, batch.completed_at is not None) == (0, True)
    kinds = [(e.kind, e.id or e.batch) for _, events in store.read_events(0, 10) for e in events]
    assert kinds[-4:] == [
        (EventKind.SUCCEEDED, parent.id),
        (EventKind.BATCH_PROGRESS, "b"),
        (EventKind.ENQUEUED, after.id),
        (EventKind.ENQUEUED, callback.id),
    ]


@pytest.mark.parametrize("column", ["follow_ups", "callback"])
def test_follow_ups_or_a_callback_that_do_not_decode_never_break_the_step(
    store: SqliteStore, path: str, column: str
) -> None:
    after = _job(queue="after")
    callback = _job(queue="callbacks")
    parent = _job(batch="b", follow_ups=(FollowUp(on=(JobState.DEAD,), job=after),))
    store.enqueue(EnqueueParams(jobs=[parent], batch=BatchOpen(id="b", callback=callback)))
    table = "offload_jobs" if column == "follow_ups" else "offload_batches"
    _raw(path, f"UPDATE {table} SET {column} = 'garbage'")
    (job,) = store.claim(ClaimParams(queues=["q"], limit=1, worker="w", lease_s=30))
    assert job.unreadable is None  # the job runs: its follow-ups are not its own fields
    assert _finish(store, job.id, job.delivery, OutcomeKind.DEAD) == []
    (dead,) = store.get(IdsParams(ids=[parent.id]))
    assert dead.state is JobState.DEAD
    (batch,) = store.batches(BatchQueryParams(ids=["b"]))
    assert batch.remaining == 0
    expected = [after.id] if column == "callback" else [callback.id]
    assert _ids(store, after.id, callback.id) == expected


def test_a_follow_up_or_callback_no_store_could_hold_is_refused_at_the_enqueue(
    store: SqliteStore,
) -> None:
    """Its parent's end would fail to store it: the enqueue says so, and stores nothing."""
    bad = _job(run_at=float("nan"))
    deep = _job(follow_ups=(FollowUp(on=(JobState.SUCCEEDED,), job=bad),))
    for parent, batch in [
        (_job(follow_ups=(FollowUp(on=(JobState.DEAD,), job=bad),)), None),
        (_job(follow_ups=(FollowUp(on=(JobState.DEAD,), job=deep),)), None),
        (_job(batch="b"), BatchOpen(id="b", callback=bad)),
    ]:
        with pytest.raises(ValueRejected, match="run_at"):
            store.enqueue(EnqueueParams(jobs=[parent], batch=batch))
        assert store.get(IdsParams(ids=[parent.id])) == []
    assert store.batches(BatchQueryParams()) == []


def test_an_old_database_upgrades_and_its_jobs_end_as_before(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for version, sql in migrations():
        if version > 5:
            break
        for statement in _statements(sql):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 5")
    conn.execute(
        "INSERT INTO offload_jobs (id, task, queue, state, payload, run_at, created_at, batch) "
        "VALUES ('old-1', 't', 'q', 'queued', '[]', 0, 0, 'old-batch')"
    )
    conn.close()
    store = SqliteStore(path)
    try:
        (job,) = store.claim(ClaimParams(queues=["q"], limit=1, worker="w", lease_s=30))
        assert _finish(store, job.id, job.delivery, OutcomeKind.SUCCEEDED) == []
        assert store.batches(BatchQueryParams()) == []  # a batch nobody opened: no record
        store.enqueue(EnqueueParams(jobs=[_job(batch="new")], batch=BatchOpen(id="new")))
        assert [b.id for b in store.batches(BatchQueryParams())] == ["new"]
    finally:
        store.close()


def test_enqueue_counts_add_one_row_per_queue_and_task(path: str) -> None:
    clock = Clock()
    store = SqliteStore(path, clock=clock)
    try:
        store.enqueue(EnqueueParams(jobs=[_job() for _ in range(5)] + [_job(queue="r")]))
        store.enqueue(EnqueueParams(jobs=[_job()]))
        minute = int(START // 60)
        rows = store.read_counts(CountsQuery(since_minute=minute, until_minute=minute))
        assert [(r.queue, r.enqueued, r.source, r.wait_ms) for r in rows] == [
            ("q", 6, "enqueue", []), ("r", 1, "enqueue", [])]  # fmt: skip
        _raw(path, "UPDATE offload_counts SET run_ms = 'garbage' WHERE queue = 'r'")
        rows = store.read_counts(CountsQuery(since_minute=minute, until_minute=minute, task="t"))
        assert [r.queue for r in rows] == ["q"]  # a row that does not decode is left out
    finally:
        store.close()


def test_counts_are_pruned_in_bounded_steps(path: str) -> None:
    clock = Clock()
    store = SqliteStore(path, clock=clock)
    try:
        rows = [
            MinuteCounts(minute=m, queue="q", task="t", source=s, started=1)
            for m in range(100, 110)
            for s in ("w1", "w2", "w3")
        ]
        store.record_counts(CountsParams(rows=rows[:15], ttl_s=60))
        store.record_counts(CountsParams(rows=rows[15:], ttl_s=3600))
        clock.now += 120
        prune_counts(store._db, clock.now, 107 * 60, step=4)
        left = store.read_counts(CountsQuery(since_minute=0, until_minute=200))
        assert sorted({r.minute for r in left}) == [107, 108, 109]
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT count(*) FROM offload_counts").fetchone() == (9,)
        conn.close()
    finally:
        store.close()


def test_a_finish_reads_nothing_for_jobs_without_follow_ups(store: SqliteStore) -> None:
    """The hot path: a job with no follow-ups and no batch costs its finish no read of
    the jobs table (whether anyone listens to events is one read of a one-row mark)."""
    plain, parent = _job(), _job(follow_ups=(FollowUp(on=(JobState.DEAD,), job=_job()),))
    store.enqueue(EnqueueParams(jobs=[plain, parent]))
    claimed = store.claim(ClaimParams(queues=["q"], limit=2, worker="w", lease_s=30))
    statements: list[str] = []
    store._conn().set_trace_callback(statements.append)
    try:
        for job in sorted(claimed, key=lambda j: j.id != plain.id):  # plain first
            statements.clear()
            assert _finish(store, job.id, job.delivery, OutcomeKind.SUCCEEDED) == []
            reads = [s for s in statements if s.lstrip().startswith("SELECT") and "jobs" in s]
            assert len(reads) == (0 if job.id == plain.id else 1), statements
    finally:
        store._conn().set_trace_callback(None)
