"""PostgreSQL: what a job's end sets off, with rows written by hand or another version."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from offload.backends.base import (
    BatchQueryParams,
    ClaimParams,
    EnqueueParams,
    FinishParams,
    IdsParams,
    Outcome,
    OutcomeKind,
)
from offload.backends.postgres import PostgresBackend, postgres_backend
from offload.ids import IdGenerator
from offload.records import BatchOpen, FollowUp, JobRecord, NewJob
from offload.states import JobState

new_id = IdGenerator()


def _job(**fields: Any) -> NewJob:
    return NewJob(**{"id": new_id(), "task": "t.echo", "queue": "default", "payload": b"\x00[]",
                     **fields})  # fmt: skip


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


def _sql(backend: PostgresBackend, statement: str, *args: object) -> None:
    with psycopg.connect(backend.config.conninfo, autocommit=True) as conn:
        conn.execute(statement.replace("{schema}", backend.st.schema), args)


def _succeed(backend: PostgresBackend, runner: asyncio.Runner, queue: str = "default") -> str:
    params = ClaimParams(queues=[queue], limit=1, worker="w", lease_s=30)
    (job,) = runner.run(backend.claim(params))
    outcome = Outcome(id=job.id, delivery=job.delivery, kind=OutcomeKind.SUCCEEDED, result=b"")
    assert runner.run(backend.finish(FinishParams(outcomes=[outcome]))).rejected == []
    return job.id


def _get(backend: PostgresBackend, *ids: str) -> list[JobRecord]:
    return backend.blocking.get(IdsParams(ids=list(ids)))


@pytest.mark.parametrize(
    "stored", ["'\"text\"'", "'[1, 2]'", '\'[{"on": ["succeeded"], "id": 5}]\'']
)
def test_follow_ups_that_do_not_insert_are_skipped_and_the_end_still_counts(
    backend: PostgresBackend, runner: asyncio.Runner, stored: str
) -> None:
    """A row written by hand: its follow-ups are left out, its batch still counts it."""
    callback = _job(queue="callbacks")
    parent = _job(batch="b", follow_ups=(FollowUp(on=(JobState.SUCCEEDED,), job=_job()),))
    backend.blocking.enqueue(
        EnqueueParams(jobs=[parent], batch=BatchOpen(id="b", callback=callback))
    )
    _sql(backend, f"UPDATE {{schema}}.jobs SET follow_ups = {stored}::jsonb WHERE id = %s",
         parent.id)  # fmt: skip
    assert _succeed(backend, runner) == parent.id
    assert _get(backend, parent.id)[0].state is JobState.SUCCEEDED
    (batch,) = backend.blocking.batches(BatchQueryParams(ids=["b"]))
    assert batch.remaining == 0 and batch.completed_at is not None
    assert [j.id for j in _get(backend, callback.id)] == [callback.id]


def test_a_follow_up_keeps_its_own_follow_ups_and_its_payload_bytes(
    backend: PostgresBackend, runner: asyncio.Runner
) -> None:
    grandchild = _job(queue="third")
    child = _job(queue="second", payload=b"\xff\x00 bytes",
                 follow_ups=(FollowUp(on=(JobState.SUCCEEDED,), job=grandchild),))  # fmt: skip
    parent = _job(follow_ups=(FollowUp(on=(JobState.SUCCEEDED,), job=child),))
    backend.blocking.enqueue(EnqueueParams(jobs=[parent]))
    _succeed(backend, runner)
    (stored,) = _get(backend, child.id)
    assert (stored.queue, stored.payload, stored.state) == ("second", child.payload,
                                                            JobState.QUEUED)  # fmt: skip
    assert _get(backend, grandchild.id) == []
    _succeed(backend, runner, "second")
    assert [j.queue for j in _get(backend, grandchild.id)] == ["third"]


def test_a_job_without_follow_ups_or_batch_never_calls_the_endings_function(
    backend: PostgresBackend, runner: asyncio.Runner
) -> None:
    """The hot path pays for endings only when a job has some: with the function made to
    fail, a plain job still ends on every path; a batch member's end does reach it."""
    _sql(
        backend,
        "CREATE OR REPLACE FUNCTION {schema}.jobs_ended(ids text[], states text[],"
        " batches text[], follow_ups jsonb[], at timestamptz, channel text)"
        " RETURNS TABLE (e_kind text, e_id text, e_queue text, e_state text, e_task text,"
        " e_owner text, e_batch text, e_attempt integer, e_progress double precision,"
        " e_message text, e_seq integer) LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'jobs_ended called'; END $$",
    )
    plain, cancelled, deleted = _job(), _job(), _job()
    backend.blocking.enqueue(EnqueueParams(jobs=[plain, cancelled, deleted]))
    assert _succeed(backend, runner) == plain.id
    backend.blocking.cancel(IdsParams(ids=[cancelled.id]))
    assert backend.blocking.delete(IdsParams(ids=[deleted.id])) == [deleted.id]
    member = _job(batch="b")
    backend.blocking.enqueue(EnqueueParams(jobs=[member], batch=BatchOpen(id="b")))
    with pytest.raises(Exception, match="jobs_ended called"):
        backend.blocking.cancel(IdsParams(ids=[member.id]))
