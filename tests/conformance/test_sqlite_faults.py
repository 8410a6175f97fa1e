"""SQLite only: a full disk, a locked file, long prunes, lifetimes, in-memory URLs."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conformance_helpers import QUEUE, FakeClock, new_job

from offload.backends.base import (
    BackendError,
    ClaimParams,
    EnqueueParams,
    FinishParams,
    IdsParams,
    MarkNamesParams,
    MarkParams,
    Outcome,
    OutcomeKind,
    PruneParams,
)
from offload.backends.sqlite import SqliteStore, sqlite_backend
from offload.states import JobState


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path.resolve() / "offload.db")


@pytest.fixture
def store(db_path: str, clock: FakeClock) -> Iterator[SqliteStore]:
    opened = SqliteStore(db_path, clock=clock.time)
    yield opened
    opened.close()


def _raw(db_path: str, sql: str, *args: object) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute(sql, args)
    finally:
        conn.close()


# -- a full disk ------------------------------------------------------------------


def test_a_full_disk_surfaces_as_a_backend_error_with_sqlites_words(
    store: SqliteStore,
) -> None:
    store.enqueue(EnqueueParams(jobs=[new_job()]))
    (job,) = store.claim(ClaimParams(queues=[QUEUE], limit=1, worker="w", lease_s=30))
    conn = store._conn()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    outcome = Outcome(
        id=job.id, delivery=job.delivery, kind=OutcomeKind.SUCCEEDED, result=b"x" * 200_000
    )
    with pytest.raises(BackendError, match="full"):
        store.finish(FinishParams(outcomes=[outcome]))
    conn.execute(f"PRAGMA max_page_count = {2**31}")
    (still,) = store.get(IdsParams(ids=[job.id]))
    assert still.state is JobState.RUNNING, "nothing of the failed call was stored"
    assert store.finish(FinishParams(outcomes=[outcome])).rejected == []


# -- opening ----------------------------------------------------------------------


def test_opening_while_another_process_holds_the_write_lock_waits_then_says_why(
    db_path: str, clock: FakeClock
) -> None:
    SqliteStore(db_path, clock=clock.time).close()
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(BackendError, match="lock"):
            SqliteStore(db_path, busy_timeout_ms=50, clock=clock.time)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    SqliteStore(db_path, busy_timeout_ms=50, clock=clock.time).close()  # free again: opens


def test_a_write_while_another_process_holds_the_lock_fails_whole_after_its_timeout(
    db_path: str, clock: FakeClock
) -> None:
    store = SqliteStore(db_path, busy_timeout_ms=80, clock=clock.time)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    job = new_job()
    try:
        with pytest.raises(BackendError, match=r"busy.*busy_timeout_ms"):
            store.enqueue(EnqueueParams(jobs=[job]))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.get(IdsParams(ids=[job.id])) == []
    # the connection's own busy wait (for reads) is back to what the URL asked
    assert store._db.get().execute("PRAGMA busy_timeout").fetchone() == (80,)
    assert [r.id for r in store.enqueue(EnqueueParams(jobs=[job]))] == [job.id]
    store.close()


def test_a_write_waits_for_another_processs_lock_and_then_goes_through(
    db_path: str, clock: FakeClock
) -> None:
    store = SqliteStore(db_path, clock=clock.time)
    holder = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO offload_marks (name, value) VALUES ('held', 'x')")
    release = threading.Timer(0.2, lambda: holder.execute("COMMIT"))
    release.start()
    job = new_job()
    try:
        assert [r.id for r in store.enqueue(EnqueueParams(jobs=[job]))] == [job.id]
    finally:
        release.join()
        holder.close()
    # the write went in after the holder's commit, not over it
    assert store._db.get().execute(
        "SELECT count(*) FROM offload_marks WHERE name = 'held'"
    ).fetchone() == (1,)
    store.close()


def test_an_in_memory_database_is_refused_with_a_way_out() -> None:
    with pytest.raises(ValueError, match="memory://"):
        sqlite_backend("sqlite:///:memory:")


# -- prune in bounded steps ---------------------------------------------------------


def test_prune_deletes_in_bounded_transactions_and_enqueues_keep_working(
    store: SqliteStore, clock: FakeClock, db_path: str
) -> None:
    total = 2_500
    jobs = [new_job() for _ in range(total)]
    store.enqueue(EnqueueParams(jobs=jobs))
    claimed = store.claim(ClaimParams(queues=[QUEUE], limit=total, worker="w", lease_s=30))
    store.finish(
        FinishParams(
            outcomes=[
                Outcome(id=j.id, delivery=j.delivery, kind=OutcomeKind.SUCCEEDED, result=b"1")
                for j in claimed
            ]
        )
    )
    clock.advance(10)
    statements: list[str] = []
    store._conn().set_trace_callback(statements.append)
    other = SqliteStore(db_path, busy_timeout_ms=2_000, clock=clock.time)
    enqueued: list[str] = []
    errors: list[BaseException] = []

    def enqueue_meanwhile() -> None:
        try:
            for _ in range(20):
                (record,) = other.enqueue(EnqueueParams(jobs=[new_job()]))
                enqueued.append(record.id)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=enqueue_meanwhile)
    thread.start()
    assert store.prune(PruneParams(finished_before=clock.now)) == total
    thread.join()
    other.close()
    store._conn().set_trace_callback(None)
    assert errors == []
    assert len(enqueued) == 20
    commits = [s for s in statements if s.strip().upper() == "COMMIT"]
    assert len(commits) >= 3, f"one long transaction: {statements[:5]}"


def test_prune_deletes_expired_marks_rows(store: SqliteStore, clock: FakeClock) -> None:
    assert store.set_mark(MarkParams(name="gone", value="1", ttl_s=5.0))
    assert store.set_mark(MarkParams(name="kept", value="1"))
    clock.advance(6.0)
    store.prune(PruneParams(finished_before=clock.now))
    rows = store._conn().execute("SELECT name FROM offload_marks").fetchall()
    assert rows == [("kept",)]
    assert store.get_marks(MarkNamesParams(names=["gone", "kept"])) == {"kept": "1"}


def test_prune_deletes_old_turns_rows(store: SqliteStore, clock: FakeClock) -> None:
    store.enqueue(EnqueueParams(jobs=[new_job(fair=True, owner="a")]))
    assert store._conn().execute("SELECT count(*) FROM offload_turns").fetchone()[0] == 1
    clock.advance(10)
    store.prune(PruneParams(finished_before=clock.now))
    assert store._conn().execute("SELECT count(*) FROM offload_turns").fetchone()[0] == 0


def test_finding_a_batchs_unfinished_members_uses_an_index(store: SqliteStore) -> None:
    plan = (
        store._conn()
        .execute(
            "EXPLAIN QUERY PLAN SELECT id FROM offload_jobs WHERE batch = ? "
            "AND state IN ('scheduled', 'queued', 'running') ORDER BY id DESC LIMIT 1",
            ("b",),
        )
        .fetchall()
    )
    assert any("offload_jobs_batch" in str(row) for row in plan), plan
