"""SQLite only: a row written by another version or by hand comes back with a note."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from conformance_helpers import QUEUE, FakeClock, new_job

from offload.backends.base import (
    ClaimParams,
    EnqueueParams,
    IdsParams,
    QueryParams,
)
from offload.backends.sqlite import SqliteStore


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


# -- rows written by another version or by hand ------------------------------------

CORRUPTIONS = [
    ("meta", "UPDATE offload_jobs SET meta = 'null' WHERE id = ?"),
    ("meta", "UPDATE offload_jobs SET meta = 'garbage' WHERE id = ?"),
    ("error", "UPDATE offload_jobs SET error = '{\"msg\": 1}' WHERE id = ?"),
    ("error", "UPDATE offload_jobs SET error = 'not json' WHERE id = ?"),
]


@pytest.mark.parametrize("field, corrupt", CORRUPTIONS)
def test_a_row_that_does_not_decode_is_returned_with_a_note(
    store: SqliteStore, db_path: str, field: str, corrupt: str
) -> None:
    good, bad = new_job(), new_job()
    store.enqueue(EnqueueParams(jobs=[good, bad]))
    _raw(db_path, corrupt, bad.id)
    (got,) = store.get(IdsParams(ids=[bad.id]))
    assert got.id == bad.id and got.unreadable is not None and field in got.unreadable
    page = store.query(QueryParams(limit=10))
    assert {j.id for j in page.jobs} == {good.id, bad.id}
    claimed = store.claim(ClaimParams(queues=[QUEUE], limit=10, worker="w", lease_s=30))
    assert {j.id for j in claimed} == {good.id, bad.id}
    by_id = {j.id: j for j in claimed}
    assert by_id[good.id].unreadable is None
    assert by_id[bad.id].unreadable is not None and by_id[bad.id].delivery == 1


HISTORIES = [
    "UPDATE offload_jobs SET attempts = 'garbage' WHERE id = ?",
    'UPDATE offload_jobs SET attempts = \'[{"number": "x"}]\' WHERE id = ?',
    "UPDATE offload_jobs SET attempts = 42 WHERE id = ?",
    "UPDATE offload_jobs SET attempts = 'garbage', meta = 'null' WHERE id = ?",
]


@pytest.mark.parametrize("corrupt", HISTORIES)
def test_a_history_that_does_not_decode_reads_as_none_and_the_job_still_runs(
    store: SqliteStore, db_path: str, corrupt: str
) -> None:
    """History is for people: it never makes a job unreadable (a worker would dead-letter
    it); a field the job needs (meta, here with it) still does."""
    job = new_job()
    store.enqueue(EnqueueParams(jobs=[job]))
    _raw(db_path, corrupt, job.id)
    needs = "meta" in corrupt
    for got in (
        store.get(IdsParams(ids=[job.id]))[0],
        store.query(QueryParams(limit=10)).jobs[0],
        store.claim(ClaimParams(queues=[QUEUE], limit=1, worker="w", lease_s=30))[0],
    ):
        assert got.id == job.id and got.attempts == []
        if needs:
            assert got.unreadable is not None and "attempts" not in got.unreadable
        else:
            assert got.unreadable is None


def test_a_payload_stored_as_text_is_read_as_its_bytes(store: SqliteStore, db_path: str) -> None:
    job = new_job()
    store.enqueue(EnqueueParams(jobs=[job]))
    _raw(db_path, "UPDATE offload_jobs SET payload = '[1]' WHERE id = ?", job.id)
    (got,) = store.claim(ClaimParams(queues=[QUEUE], limit=1, worker="w", lease_s=30))
    assert got.payload == b"[1]" and got.unreadable is None


def test_a_row_in_an_unknown_state_is_returned_with_a_note(
    store: SqliteStore, db_path: str
) -> None:
    job = new_job()
    store.enqueue(EnqueueParams(jobs=[job]))
    _raw(db_path, "UPDATE offload_jobs SET state = 'paused' WHERE id = ?", job.id)
    (got,) = store.get(IdsParams(ids=[job.id]))
    assert got.unreadable is not None and "state" in got.unreadable and "paused" in got.unreadable
