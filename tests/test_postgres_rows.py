"""PostgreSQL: a row written by another version or by hand comes back with a note."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from offload.backends.base import (
    ClaimParams,
    EnqueueParams,
    FinishParams,
    IdsParams,
    Outcome,
    OutcomeKind,
    QueryParams,
)
from offload.backends.postgres import PostgresBackend, PostgresSync, postgres_backend
from offload.ids import IdGenerator
from offload.records import NewJob

new_id = IdGenerator()


def _job(**fields: Any) -> NewJob:
    return NewJob(id=new_id(), task="t.echo", queue="default", payload=b"[]", **fields)


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    """One event loop per test: a backend's async pool belongs to the loop that opened it."""
    with asyncio.Runner() as r:
        yield r


@pytest.fixture
def backend(postgres_url: str, runner: asyncio.Runner) -> Iterator[PostgresBackend]:
    opened = postgres_backend(postgres_url)
    opened.blocking.migrate()
    yield opened
    runner.run(opened.close())


def _sql(backend: PostgresBackend, statement: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(backend.config.conninfo, autocommit=True) as conn:
        cursor = conn.execute(statement.replace("{schema}", backend.st.schema), args)
        return cursor.fetchall() if cursor.description else []


def _claim(backend: PostgresBackend, runner: asyncio.Runner, limit: int = 10) -> list[Any]:
    params = ClaimParams(queues=["default"], limit=limit, worker="w", lease_s=30)
    return runner.run(backend.claim(params))


def _sync(backend: PostgresBackend) -> PostgresSync:
    return backend.blocking


# -- rows written by another version or by hand ------------------------------------

CORRUPTIONS = [
    ("meta", "UPDATE {schema}.jobs SET meta = 'null'::jsonb WHERE id = %s"),
    ("meta", "UPDATE {schema}.jobs SET meta = '[1, 2]'::jsonb WHERE id = %s"),
    ("error", "UPDATE {schema}.jobs SET error = '\"a string\"'::jsonb WHERE id = %s"),
    ("error", "UPDATE {schema}.jobs SET error = '{\"msg\": 1}'::jsonb WHERE id = %s"),
]


@pytest.mark.parametrize("field, corrupt", CORRUPTIONS)
def test_a_row_that_does_not_decode_is_returned_with_a_note(
    backend: PostgresBackend, field: str, corrupt: str, runner: asyncio.Runner
) -> None:
    good, bad = _job(), _job()
    _sync(backend).enqueue(EnqueueParams(jobs=[good, bad]))
    _sql(backend, corrupt, bad.id)
    (got,) = _sync(backend).get(IdsParams(ids=[bad.id]))
    assert got.unreadable is not None and field in got.unreadable
    assert {j.id for j in _sync(backend).query(QueryParams(limit=10)).jobs} == {good.id, bad.id}
    claimed = {j.id: j for j in _claim(backend, runner)}
    assert set(claimed) == {good.id, bad.id}
    assert claimed[good.id].unreadable is None and claimed[bad.id].unreadable is not None


HISTORIES = [
    "UPDATE {schema}.jobs SET attempts = '[1, 2]'::json WHERE id = %s",
    'UPDATE {schema}.jobs SET attempts = \'{"number": "x"}\'::json WHERE id = %s',
    "UPDATE {schema}.jobs SET attempts = '\"text\"'::json WHERE id = %s",
]


@pytest.mark.parametrize("corrupt", HISTORIES)
def test_a_history_that_does_not_decode_reads_as_none_and_the_job_still_runs(
    backend: PostgresBackend, corrupt: str, runner: asyncio.Runner
) -> None:
    """History is for people: a job whose attempts do not decode is no reason to
    dead-letter it (the worker does that to unreadable jobs)."""
    job = _job()
    _sync(backend).enqueue(EnqueueParams(jobs=[job]))
    _sql(backend, corrupt, job.id)
    (got,) = _sync(backend).get(IdsParams(ids=[job.id]))
    assert (got.attempts, got.unreadable) == ([], None)
    (claimed,) = _claim(backend, runner)
    assert (claimed.id, claimed.attempts, claimed.unreadable) == (job.id, [], None)
    outcome = Outcome(id=job.id, delivery=claimed.delivery, kind=OutcomeKind.SUCCEEDED,
                      result=b"1")  # fmt: skip
    assert runner.run(backend.finish(FinishParams(outcomes=[outcome]))).rejected == []
    (done,) = _sync(backend).get(IdsParams(ids=[job.id]))
    assert done.state.value == "succeeded" and done.unreadable is None


def test_rows_of_another_schema_version_unknown_state_and_null_payload(
    backend: PostgresBackend,
    runner: asyncio.Runner,
) -> None:
    odd_state, no_payload = _job(), _job()
    _sync(backend).enqueue(EnqueueParams(jobs=[odd_state, no_payload]))
    _sql(backend, "ALTER TABLE {schema}.jobs DROP CONSTRAINT jobs_state_check")
    _sql(backend, "ALTER TABLE {schema}.jobs ALTER COLUMN payload DROP NOT NULL")
    _sql(backend, "UPDATE {schema}.jobs SET state = 'paused' WHERE id = %s", odd_state.id)
    _sql(backend, "UPDATE {schema}.jobs SET payload = NULL WHERE id = %s", no_payload.id)
    got = {j.id: j for j in _sync(backend).get(IdsParams(ids=[odd_state.id, no_payload.id]))}
    assert "state" in (got[odd_state.id].unreadable or "")
    assert "payload" in (got[no_payload.id].unreadable or "")
    (claimed,) = _claim(backend, runner)
    assert claimed.id == no_payload.id and claimed.payload == b"" and claimed.unreadable


@pytest.mark.parametrize("written", ['{"a": 1}', "[]", "[ ]", '"text"', "null"])
def test_a_history_that_is_not_a_list_of_attempts_starts_over(
    backend: PostgresBackend, written: str, runner: asyncio.Runner
) -> None:
    """A value written by hand never stops a finish: the next ended attempt starts a list."""
    job = _job()
    _sync(backend).enqueue(EnqueueParams(jobs=[job]))
    _sql(backend, "UPDATE {schema}.jobs SET attempts = %s::json WHERE id = %s", written, job.id)
    (claimed,) = _claim(backend, runner)
    done = Outcome(id=claimed.id, delivery=claimed.delivery, kind=OutcomeKind.SUCCEEDED)
    assert runner.run(backend.finish(FinishParams(outcomes=[done]))).rejected == []
    (got,) = _sync(backend).get(IdsParams(ids=[job.id]))
    assert [(a.number, a.worker) for a in got.attempts] == [(1, "w")] and not got.unreadable
