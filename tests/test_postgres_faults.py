"""PostgreSQL only: NUL in text, the unique-key race, bounded prunes, mark lifetimes, indexes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from offload.backends.base import (
    BackendError,
    ClaimParams,
    EnqueueParams,
    FinishParams,
    IdsParams,
    MarkParams,
    Outcome,
    OutcomeKind,
    PruneParams,
)
from offload.backends.postgres import (
    PostgresBackend,
    PostgresSync,
    Statements,
    postgres_backend,
)
from offload.backends.postgres_enqueue import plan_enqueue
from offload.backends.postgres_plans import plan_prune
from offload.ids import IdGenerator
from offload.records import ErrorInfo, NewJob
from offload.states import JobState

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


# -- values PostgreSQL cannot hold -----------------------------------------------------


def test_a_nul_in_an_error_message_is_stored_escaped(
    backend: PostgresBackend, runner: asyncio.Runner
) -> None:
    _sync(backend).enqueue(EnqueueParams(jobs=[_job()]))
    (job,) = _claim(backend, runner)
    error = ErrorInfo(type="ValueError", message="bad \x00 byte", traceback="tb \x00")
    outcome = Outcome(id=job.id, delivery=job.delivery, kind=OutcomeKind.DEAD, error=error)
    assert runner.run(backend.finish(FinishParams(outcomes=[outcome]))).rejected == []
    (stored,) = _sync(backend).get(IdsParams(ids=[job.id]))
    assert stored.state is JobState.DEAD and stored.error is not None
    assert stored.error.message == "bad \\x00 byte"


# -- enqueue_many is all or nothing -----------------------------------------------------


def test_a_key_whose_holder_ends_between_two_statements_still_enqueues(
    backend: PostgresBackend,
) -> None:
    """The holder ends right after the insert skipped the job (a trigger stands for the
    other session): the enqueue stores it, never a KeyError after committing the rest."""
    holder = _job(key="k")
    _sync(backend).enqueue(EnqueueParams(jobs=[holder]))
    _sql(
        backend,
        "CREATE FUNCTION {schema}.end_holder() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"UPDATE {backend.st.schema}.jobs SET state = 'succeeded', finished_at = now() "
        f"WHERE id = '{holder.id}'; RETURN NULL; END $$",
    )
    _sql(
        backend,
        "CREATE TRIGGER end_holder AFTER INSERT ON {schema}.jobs "
        "FOR EACH STATEMENT EXECUTE FUNCTION {schema}.end_holder()",
    )
    other, keyed = _job(), _job(key="k")
    stored = _sync(backend).enqueue(EnqueueParams(jobs=[other, keyed]))
    assert [j.id for j in stored] == [other.id, keyed.id]
    (single,) = _sync(backend).enqueue(EnqueueParams(jobs=[_job(key="k2")]))
    assert single.key == "k2"


def _drive(plan: Any, answers: list[list[tuple[Any, ...]]]) -> tuple[list[str], Any]:
    """Run a plan on scripted rows: the statements it asked for, and its result."""
    asked = []
    try:
        statement = next(plan)
        while True:
            asked.append(statement[0])
            statement = plan.send(answers.pop(0) if answers else [])
    except StopIteration as done:
        return asked, done.value


def test_prune_plan_deletes_in_bounded_statements() -> None:
    st = Statements("s", injected_clock=False)
    full = [(1,)] * 1000
    asked, deleted = _drive(
        plan_prune(st, PruneParams(finished_before=1.0)), [[], [], full, full, [(1,)] * 7]
    )
    deletes = [s for s in asked if "DELETE FROM" in s and ".jobs" in s]
    assert len(deletes) == 3 and all("LIMIT" in s for s in deletes)
    assert deleted == 2007


@pytest.mark.parametrize("count", [1, 2])
def test_enqueue_plan_retries_a_key_whose_holder_ended(count: int) -> None:
    st = Statements("s", injected_clock=False)
    plan = plan_enqueue(st, EnqueueParams(jobs=[_job(key=f"k{i}") for i in range(count)]))
    asked = [next(plan)[0]]
    asked.append(plan.send([])[0])  # the insert skipped every job: their keys are held
    asked.append(plan.send([])[0])  # no live holder any more: insert again, never fail
    assert "INSERT" in asked[0] and "INSERT" not in asked[1] and "INSERT" in asked[2]


def test_prune_of_many_rows_deletes_them_all(
    backend: PostgresBackend, runner: asyncio.Runner
) -> None:
    total = 2_300
    jobs = [_job() for _ in range(total)]
    _sync(backend).enqueue(EnqueueParams(jobs=jobs))
    claimed = _claim(backend, runner, limit=total)
    outcomes = [Outcome(id=j.id, delivery=j.delivery, kind=OutcomeKind.SUCCEEDED) for j in claimed]
    runner.run(backend.finish(FinishParams(outcomes=outcomes)))
    now = runner.run(backend.now())
    assert runner.run(backend.prune(PruneParams(finished_before=now + 1))) == total
    assert _sql(backend, "SELECT count(*) FROM {schema}.jobs") == [(0,)]


def test_prune_deletes_expired_marks_rows(postgres_url: str, runner: asyncio.Runner) -> None:
    clock = [1_700_000_000.0]
    backend = postgres_backend(postgres_url, clock=lambda: clock[0])
    try:
        assert backend.blocking.set_mark(MarkParams(name="gone", value="1", ttl_s=5.0))
        assert backend.blocking.set_mark(MarkParams(name="kept", value="1"))
        clock[0] += 6
        runner.run(backend.prune(PruneParams(finished_before=clock[0])))
        assert _sql(backend, "SELECT name FROM {schema}.marks") == [("kept",)]
    finally:
        runner.run(backend.close())


def test_finding_a_batchs_unfinished_members_uses_an_index(backend: PostgresBackend) -> None:
    with psycopg.connect(backend.config.conninfo, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = conn.execute(
            f"EXPLAIN SELECT id FROM {backend.st.schema}.jobs WHERE batch = 'b' "
            "AND state IN ('scheduled', 'queued', 'running') ORDER BY id DESC LIMIT 1"
        ).fetchall()
    assert any("jobs_batch" in row[0] for row in plan), plan


# -- a server that refuses writes for a while (a failover onto a standby) ---------------
def test_a_read_only_server_is_an_outage_not_a_refused_value(
    postgres_url: str, backend: PostgresBackend, runner: asyncio.Runner
) -> None:
    """ReadOnlySqlTransaction names no value of the call: the worker must keep the outcome
    and send it again (BackendError), not dead-letter the job (ValueRejected or raw)."""
    runner.run(backend.enqueue(EnqueueParams(jobs=[_job()])))
    (claimed,) = _claim(backend, runner)
    separator = "&" if "?" in postgres_url else "?"
    read_only = postgres_backend(
        f"{postgres_url}{separator}options=-c%20default_transaction_read_only%3Don"
    )
    done = Outcome(id=claimed.id, delivery=claimed.delivery, kind=OutcomeKind.SUCCEEDED,
                   result=b"1")  # fmt: skip
    try:
        with pytest.raises(BackendError):
            runner.run(read_only.finish(FinishParams(outcomes=[done])))
        with pytest.raises(BackendError):
            read_only.blocking.enqueue(EnqueueParams(jobs=[_job()]))
    finally:
        runner.run(read_only.close())
    assert runner.run(backend.finish(FinishParams(outcomes=[done]))).rejected == []
