"""SQLite only: the schema and its migrations, and several processes on one file.

Two ``SqliteStore`` objects on one file stand for two processes: each has its
own connections, and they share only the database file.
"""

from __future__ import annotations

import asyncio
import collections
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conformance_helpers import QUEUE, FakeClock, new_job

from offload.backends import store as store_module
from offload.backends.base import (
    BackendError,
    ClaimParams,
    EnqueueParams,
    FinishParams,
    HeartbeatParams,
    IdsParams,
    LeaseRef,
    Outcome,
    OutcomeKind,
    ReapParams,
    WaitParams,
)
from offload.backends.filewatch import CAN_WATCH_FILES
from offload.backends.sqlite import (
    SqliteStore,
    apply_schema,
    fresh_schema,
    migrations,
    sqlite_backend,
)
from offload.backends.store import ThreadedBackend
from offload.states import JobState


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path.resolve() / "offload.db")


@pytest.fixture
def open_store(db_path: str, clock: FakeClock) -> Iterator:
    """Open ``SqliteStore`` objects on the same file ("processes"); all closed afterwards."""
    stores: list[SqliteStore] = []

    def opener() -> SqliteStore:
        store = SqliteStore(db_path, clock=clock.time)
        stores.append(store)
        return store

    yield opener
    for store in stores:
        store.close()


# -- schema --------------------------------------------------------------------


def _schema_of(conn: sqlite3.Connection) -> list[tuple[str, str, str, str | None]]:
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    return sorted(
        (kind, name, table, None if sql is None else " ".join(sql.split()))
        for kind, name, table, sql in rows
    )


def _migrate(conn: sqlite3.Connection, upto: int | None = None) -> None:
    """Run the migration scripts one by one, as an old database would have seen them."""
    for version, sql in migrations():
        if upto is not None and version > upto:
            break
        conn.executescript(sql)
        conn.execute(f"PRAGMA user_version = {version}")


def test_migrations_are_numbered_in_order() -> None:
    versions = [v for v, _ in migrations()]
    assert versions, "no migration scripts found"
    assert versions == list(range(1, len(versions) + 1))


def test_migrations_in_order_equal_the_fresh_schema(tmp_path: Path) -> None:
    fresh = sqlite3.connect(tmp_path / "fresh.db", isolation_level=None)
    migrated = sqlite3.connect(tmp_path / "migrated.db", isolation_level=None)
    try:
        fresh.executescript(fresh_schema())
        _migrate(migrated)
        assert _schema_of(fresh), "the fresh schema created nothing"
        assert _schema_of(migrated) == _schema_of(fresh)
    finally:
        fresh.close()
        migrated.close()


@pytest.mark.parametrize("start", [v for v, _ in migrations()])
def test_apply_schema_upgrades_an_old_database_to_the_fresh_schema(
    tmp_path: Path, start: int
) -> None:
    latest = migrations()[-1][0]
    fresh = sqlite3.connect(tmp_path / "fresh.db", isolation_level=None)
    old = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    try:
        apply_schema(fresh)
        _migrate(old, upto=start)
        apply_schema(old)
        assert _schema_of(old) == _schema_of(fresh)
        for conn in (fresh, old):
            assert conn.execute("PRAGMA user_version").fetchone()[0] == latest
        apply_schema(old)  # a second run changes nothing
        assert _schema_of(old) == _schema_of(fresh)
    finally:
        fresh.close()
        old.close()


def test_apply_schema_refuses_a_newer_database(tmp_path: Path) -> None:
    latest = migrations()[-1][0]
    conn = sqlite3.connect(tmp_path / "newer.db", isolation_level=None)
    try:
        apply_schema(conn)
        conn.execute(f"PRAGMA user_version = {latest + 1}")
        with pytest.raises(BackendError, match="upgrade offload"):
            apply_schema(conn)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == latest + 1
    finally:
        conn.close()


# -- several processes on one file -------------------------------------------------


def test_jobs_are_durable_for_another_process(open_store) -> None:
    writer = open_store()
    jobs = [new_job(meta={"i": i}) for i in range(5)]
    stored = writer.enqueue(EnqueueParams(jobs=jobs))
    reader = open_store()
    assert reader.get(IdsParams(ids=[j.id for j in jobs])) == stored
    writer.close()
    assert open_store().get(IdsParams(ids=[j.id for j in jobs])) == stored


def test_two_processes_never_claim_the_same_job(open_store) -> None:
    total = 500
    first, second = open_store(), open_store()
    jobs = [new_job() for _ in range(total)]
    for start in range(0, total, 100):
        first.enqueue(EnqueueParams(jobs=jobs[start : start + 100]))

    threads_per_store = 3
    stores = [first, second] * threads_per_store
    # Rounds in lockstep: every thread claims at the same moment, so the two
    # "processes" really contend for the same rows in every round.
    barrier = threading.Barrier(len(stores))
    got = [0] * len(stores)
    claimed: list[list[str]] = [[] for _ in stores]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        store = stores[index]
        rng = random.Random(index)
        try:
            while True:
                barrier.wait()
                params = ClaimParams(
                    queues=[QUEUE], limit=rng.randint(1, 8), worker=f"w{index}", lease_s=600.0
                )
                batch = store.claim(params)
                got[index] = len(batch)
                claimed[index] += [j.id for j in batch]
                outcomes = [
                    Outcome(id=j.id, delivery=j.delivery, kind=OutcomeKind.SUCCEEDED) for j in batch
                ]
                assert store.finish(FinishParams(outcomes=outcomes)).rejected == []
                barrier.wait()
                if sum(got) == 0:
                    return
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert not any(thread.is_alive() for thread in threads)

    counts = collections.Counter(job_id for ids in claimed for job_id in ids)
    assert sorted(counts) == sorted(j.id for j in jobs)
    assert {n for n in counts.values()} == {1}, "some job was claimed twice"
    # The first round alone cannot empty the queue: every thread took part.
    assert all(claimed), [len(ids) for ids in claimed]
    records = second.get(IdsParams(ids=[j.id for j in jobs]))
    assert {(r.state, r.attempt, r.delivery) for r in records} == {(JobState.SUCCEEDED, 1, 1)}


def test_fencing_holds_across_processes(open_store, clock: FakeClock) -> None:
    frozen_process, other_process = open_store(), open_store()
    (job,) = frozen_process.enqueue(EnqueueParams(jobs=[new_job()]))
    claim = ClaimParams(queues=[QUEUE], limit=1, worker="frozen", lease_s=10.0)
    (frozen,) = frozen_process.claim(claim)
    clock.advance(11.0)
    assert [r.id for r in other_process.reap_expired(ReapParams())] == [job.id]
    (current,) = other_process.claim(
        ClaimParams(queues=[QUEUE], limit=1, worker="fresh", lease_s=10.0)
    )
    late = Outcome(id=job.id, delivery=frozen.delivery, kind=OutcomeKind.DEAD)
    assert frozen_process.finish(FinishParams(outcomes=[late])).rejected == [job.id]
    beat = HeartbeatParams(
        leases=[LeaseRef(id=job.id, delivery=frozen.delivery)], worker="frozen", lease_s=10.0
    )
    assert frozen_process.heartbeat(beat).lost == [job.id]
    (stored,) = frozen_process.get(IdsParams(ids=[job.id]))
    assert (stored.state, stored.worker, stored.delivery) == (
        JobState.RUNNING,
        "fresh",
        current.delivery,
    )


async def test_wait_wakes_up_on_an_enqueue_by_another_process(
    db_path: str, clock: FakeClock, open_store
) -> None:
    waiter: ThreadedBackend = sqlite_backend("sqlite:///" + db_path, clock=clock.time)
    other_process = open_store()
    wait_returned = threading.Event()
    seen: dict[str, bool] = {}
    job = new_job()

    def producer() -> None:
        time.sleep(0.05)  # let the waiter block first; the assertions hold either way
        seen["waiter_still_blocked"] = not wait_returned.is_set()
        other_process.enqueue(EnqueueParams(jobs=[job]))

    # Opening a connection writes the WAL once, which wakes watchers: open it first.
    await waiter.stats()
    thread = threading.Thread(target=producer)
    thread.start()
    try:
        # The guard only turns a missed wake-up into a failure instead of a 120 s hang.
        await asyncio.wait_for(waiter.wait(WaitParams(queues=[QUEUE], timeout_s=120.0)), 20.0)
    finally:
        wait_returned.set()
        await asyncio.to_thread(thread.join)
    try:
        assert seen == {"waiter_still_blocked": True}
        claimed = await waiter.claim(ClaimParams(queues=[QUEUE], limit=5, worker="w", lease_s=5))
        assert [j.id for j in claimed] == [job.id]
    finally:
        await waiter.close()


async def _wait_for_another_process(waiter: ThreadedBackend, other_process) -> None:
    job = new_job()

    def producer() -> None:
        time.sleep(0.05)  # let the waiter block first
        other_process.enqueue(EnqueueParams(jobs=[job]))

    thread = threading.Thread(target=producer)
    thread.start()
    try:
        # The guard only turns a missed wake-up into a failure instead of a 120 s hang.
        await asyncio.wait_for(waiter.wait(WaitParams(queues=[QUEUE], timeout_s=120.0)), 20.0)
    finally:
        await asyncio.to_thread(thread.join)
    claimed = await waiter.claim(ClaimParams(queues=[QUEUE], limit=5, worker="w", lease_s=5))
    assert [j.id for j in claimed] == [job.id]


@pytest.mark.skipif(not CAN_WATCH_FILES, reason="no inotify on this platform")
async def test_the_wal_watch_wakes_a_waiter_that_polling_could_not(
    db_path: str, clock: FakeClock, open_store, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiter: ThreadedBackend = sqlite_backend("sqlite:///" + db_path, clock=clock.time)
    assert waiter.capabilities.push_wakeups  # so workers do not poll for work either
    # A marker that never changes: polling alone would sleep out the whole timeout.
    monkeypatch.setattr(waiter.store, "change_marker", lambda: "never changes")
    try:
        await _wait_for_another_process(waiter, open_store())
    finally:
        await waiter.close()


async def test_where_files_cannot_be_watched_the_waiter_polls_the_wal(
    db_path: str, clock: FakeClock, open_store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "watch_file", lambda *args: None)
    waiter: ThreadedBackend = sqlite_backend("sqlite:///" + db_path, clock=clock.time)
    try:
        await _wait_for_another_process(waiter, open_store())
    finally:
        await waiter.close()
