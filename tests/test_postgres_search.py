"""PostgreSQL search and registry: indexes that keep it fast, payload bytes matched as
stored, the search rows kept in step with the jobs, and registry rows that end."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from offload.backends.base import (
    ClaimParams,
    CountParams,
    EnqueueParams,
    FinishParams,
    IdsParams,
    JobFilter,
    Outcome,
    OutcomeKind,
    PruneParams,
    PurgeParams,
    QueryParams,
    WorkerBeatParams,
)
from offload.backends.postgres import PostgresBackend, PostgresSync, postgres_backend
from offload.backends.postgres_admin import escape_format, like_pattern
from offload.ids import IdGenerator
from offload.records import NewJob, WorkerInfo
from offload.states import JobState

new_id = IdGenerator()


def _job(**fields: Any) -> NewJob:
    return NewJob(**{"id": new_id(), "task": "t.echo", "queue": "default",
                     "payload": b"[[1], {}]", **fields})  # fmt: skip


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as r:
        yield r


@pytest.fixture
def backend(postgres_url: str, runner: asyncio.Runner) -> Iterator[PostgresBackend]:
    opened = postgres_backend(postgres_url)
    opened.blocking.migrate()
    yield opened
    runner.run(opened.close())


def _sync(backend: PostgresBackend) -> PostgresSync:
    return backend.blocking


def _sql(backend: PostgresBackend, statement: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(backend.config.conninfo, autocommit=True) as conn:
        cursor = conn.execute(statement.replace("{schema}", backend.st.schema), args)
        return cursor.fetchall() if cursor.description else []


def _ids(backend: PostgresBackend, **fields: Any) -> list[str]:
    page = _sync(backend).query(QueryParams(filter=JobFilter(**fields), limit=100))
    return sorted(j.id for j in page.jobs)


@pytest.mark.parametrize(
    "condition, index",
    [
        ("s.body ILIKE '%report-2026%'", "job_search_trigrams"),
        ("s.created_at >= now() - interval '1 hour'", "job_search_created"),
    ],
)
def test_text_and_time_are_found_by_index(
    backend: PostgresBackend, condition: str, index: str
) -> None:
    with psycopg.connect(backend.config.conninfo, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = conn.execute(
            f"EXPLAIN SELECT id FROM {backend.st.schema}.jobs WHERE id IN ("
            f"SELECT s.id FROM {backend.st.schema}.job_search AS s WHERE {condition}) "
            "ORDER BY id DESC LIMIT 51"
        ).fetchall()
    assert any(index in row[0] for row in plan), plan


def test_payload_bytes_are_matched_as_stored(backend: PostgresBackend) -> None:
    """Non-ASCII, a backslash, a NUL and bytes that are not UTF-8: the needle is written
    the way the stored text writes the payload (bytea's escape format)."""
    accented = _job(payload='[["café crème"], {}]'.encode())
    slashed = _job(payload=b'[["C:\\\\temp\\\\x"], {}]')
    binary = _job(payload=b"\xff\xfe raw \x00 bytes")
    _sync(backend).enqueue(EnqueueParams(jobs=[accented, slashed, binary]))
    assert _ids(backend, text="café crème") == [accented.id]
    assert _ids(backend, text="C:\\\\temp") == [slashed.id]
    assert _ids(backend, text="raw \x00 bytes") == [binary.id]
    assert _ids(backend, text="\x00") == [binary.id]
    assert _ids(backend, text="é\x00") == []


def test_the_search_pattern_is_literal() -> None:
    assert like_pattern("100%_\\") == "%100\\%\\_\\\\%"
    assert escape_format("aé\\\x00".encode()) == "a\\303\\251\\\\\\000"


def test_search_rows_go_with_their_jobs(backend: PostgresBackend, runner: asyncio.Runner) -> None:
    """Delete, purge and prune forget a job's search row with the job; a stored id that
    comes back (deleted, then enqueued again) is found by its new text only."""
    gone, purged, pruned, kept = (_job(owner=f"tenant-{n}") for n in range(4))
    _sync(backend).enqueue(EnqueueParams(jobs=[gone, purged, pruned, kept]))
    assert _sync(backend).delete(IdsParams(ids=[gone.id])) == [gone.id]
    _sync(backend).cancel(IdsParams(ids=[purged.id]))
    assert _sync(backend).purge(PurgeParams(states=[JobState.CANCELLED])) == 1
    claim = ClaimParams(queues=["default"], limit=10, worker="w", lease_s=30)
    running = {j.id: j for j in runner.run(backend.claim(claim))}
    done = running[pruned.id]
    runner.run(backend.finish(FinishParams(outcomes=[
        Outcome(id=done.id, delivery=done.delivery, kind=OutcomeKind.SUCCEEDED)])))  # fmt: skip
    now = runner.run(backend.now())
    assert runner.run(backend.prune(PruneParams(finished_before=now + 1))) == 1
    assert _sql(backend, "SELECT id FROM {schema}.job_search") == [(kept.id,)]
    again = NewJob(id=gone.id, task="t.other", queue="default", payload=b"[]", owner="new-owner")
    _sync(backend).enqueue(EnqueueParams(jobs=[again]))
    assert _ids(backend, text="new-owner") == [gone.id]
    assert _ids(backend, text="tenant-0") == []


def test_count_combines_every_filter(backend: PostgresBackend) -> None:
    jobs = [_job(owner="ann", queue="docs"), _job(owner="ann"), _job(owner="bob", queue="docs")]
    _sync(backend).enqueue(EnqueueParams(jobs=jobs))
    now = _sync(backend).now()
    both = JobFilter(queue="docs", text="ann", created_after=now - 60, states=[JobState.QUEUED])
    assert _sync(backend).count(CountParams(filter=both)) == 1
    assert _sync(backend).count(CountParams(filter=JobFilter(created_before=now - 60))) == 0


def _worker(worker_id: str) -> WorkerInfo:
    return WorkerInfo(id=worker_id, host="h", pid=1, queues=["default"], concurrency=4,
                      started_at=1.0)  # fmt: skip


def test_expired_workers_are_pruned_and_entries_that_do_not_decode_are_left_out(
    postgres_url: str, runner: asyncio.Runner
) -> None:
    clock = [1_700_000_000.0]
    backend = postgres_backend(postgres_url, clock=lambda: clock[0])
    try:
        for worker_id, ttl_s in (("w-short", 5.0), ("w-long", 60.0), ("w-odd", 60.0)):
            runner.run(
                backend.beat_worker(WorkerBeatParams(worker=_worker(worker_id), ttl_s=ttl_s))
            )
        _sql(backend, "UPDATE {schema}.workers SET info = '{\"id\": 1}' WHERE id = 'w-odd'")
        assert [w.id for w in _sync(backend).workers()] == ["w-long", "w-short"]
        clock[0] += 10
        runner.run(backend.prune(PruneParams(finished_before=clock[0])))
        assert _sql(backend, "SELECT id FROM {schema}.workers ORDER BY id") == [
            ("w-long",), ("w-odd",)]  # fmt: skip
        with pytest.raises(ValueError, match="ttl_s"):
            runner.run(backend.beat_worker(WorkerBeatParams(worker=_worker("w"), ttl_s=1e300)))
    finally:
        runner.run(backend.close())
