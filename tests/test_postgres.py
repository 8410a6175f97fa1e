"""What only PostgreSQL does: its schema, transactional enqueue, surviving a restart."""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

import pg_app
from offload import JobState, Offload
from offload.backends.base import CountParams, IdsParams, JobFilter, QueryParams
from offload.backends.postgres import (
    Statements,
    fresh_schema_sql,
    migration_scripts,
    parse_postgres_url,
)
from offload.backends.postgres_plans import MIGRATION_IDLE_S, SCHEMA_LOCK_KEY
from servers import PostgresServer
from worker_helpers import WorkerThread, wait_until


def _catalog(url: str, schema: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = %s "
            "ORDER BY table_name, column_name",
            (schema,),
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexname, replace(indexdef, %s, 'S') FROM pg_indexes WHERE schemaname = %s "
            "ORDER BY indexname",
            (schema, schema),
        ).fetchall()
        checks = conn.execute(
            "SELECT conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = %s ORDER BY 1",
            (schema,),
        ).fetchall()
        functions = conn.execute(
            "SELECT p.proname, replace(pg_get_functiondef(p.oid), %s, 'S') FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s ORDER BY 1",
            (schema, schema),
        ).fetchall()
    return [*columns, *indexes, *checks, *functions]


def test_migrations_in_order_equal_the_fresh_schema(postgres_database: str) -> None:
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA fresh")
        conn.execute(fresh_schema_sql().replace("{schema}", "fresh"))
        conn.execute("CREATE SCHEMA stepwise")
        for _version, script in migration_scripts():
            conn.execute(script.replace("{schema}", "stepwise"))
    fresh = _catalog(postgres_database, "fresh")
    assert fresh, "the fresh schema created nothing"
    assert _catalog(postgres_database, "stepwise") == fresh


def test_an_older_schema_upgrades_with_its_jobs(postgres_url: str) -> None:
    """Jobs stored before version 5 read with no history and are found by text and time."""
    config = parse_postgres_url(postgres_url)
    schema = Statements(config.schema, injected_clock=False).schema
    with psycopg.connect(config.conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        for version, script in migration_scripts():
            if version <= 4:
                conn.execute(script.replace("{schema}", schema))
        conn.execute(f"CREATE TABLE {schema}.schema_version (version integer NOT NULL)")
        conn.execute(f"INSERT INTO {schema}.schema_version VALUES (4)")
        conn.execute(
            f"INSERT INTO {schema}.jobs (id, task, queue, state, payload, run_at, created_at) "
            "VALUES ('old-1', 'app.report', 'default', 'queued', '[[\"Quarterly\"], {}]', "
            "now(), to_timestamp(1700000000))"
        )
    app = Offload(postgres_url)
    blocking = app.backend.blocking
    assert blocking.migrate() == migration_scripts()[-1][0]
    (job,) = blocking.get(IdsParams(ids=["old-1"]))
    assert job.attempts == [] and job.unreadable is None
    assert blocking.count(CountParams(filter=JobFilter(text="quarterly"))) == 1
    window = JobFilter(created_after=1_700_000_000, created_before=1_700_000_001)
    assert [j.id for j in blocking.query(QueryParams(filter=window)).jobs] == ["old-1"]
    app.close()


def test_first_use_migrates_unless_disabled(postgres_url: str) -> None:
    app = Offload(postgres_url + "&migrate=false")
    with pytest.raises(Exception, match="does not exist"):
        app.backend.blocking.stats()
    app.close()
    migrated = Offload(postgres_url)
    assert migrated.backend.blocking.migrate() == migration_scripts()[-1][0]
    assert migrated.backend.blocking.stats() == []
    migrated.close()


def test_a_start_is_not_held_by_a_migration_lock_left_by_a_lost_client(postgres_url: str) -> None:
    """A worker cut off by a partition while it held the migration lock leaves its
    transaction open on the server; every later start used to wait on that lock."""
    Offload(postgres_url).backend.blocking.migrate()
    conninfo = parse_postgres_url(postgres_url).conninfo
    with psycopg.connect(conninfo) as stranded:
        stranded.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        app = Offload(postgres_url + "&timeout_s=3")
        try:
            assert app.backend.blocking.stats() == []  # the schema is current: no lock taken
        finally:
            app.close()
        stranded.rollback()


def test_a_migrator_that_went_silent_loses_the_migration_lock(postgres_url: str) -> None:
    """The lock's transaction is ended by the server once idle: the next start migrates."""
    conninfo = parse_postgres_url(postgres_url).conninfo
    with psycopg.connect(conninfo) as silent:
        silent.execute(f"SET LOCAL idle_in_transaction_session_timeout = '{MIGRATION_IDLE_S}s'")
        silent.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        app = Offload(postgres_url)  # its migration waits until the server ends that one
        try:
            assert app.backend.blocking.stats() == []
        finally:
            app.close()
        with pytest.raises(psycopg.Error):
            silent.execute("SELECT 1")  # the server ended the idle transaction's session


def test_url_options_are_checked() -> None:
    config = parse_postgres_url("postgresql://u:p@h:5/db?schema=jobs&sslmode=disable&listen=0")
    assert config.schema == "jobs" and not config.listen
    assert "sslmode=disable" in config.conninfo and "schema" not in config.conninfo
    with pytest.raises(ValueError, match="schema"):
        parse_postgres_url("postgresql://h/db?schema=bad;drop")
    with pytest.raises(ValueError, match="true or false"):
        parse_postgres_url("postgresql://h/db?migrate=maybe")
    assert Statements("jobs", injected_clock=False).channel == "offload_jobs"


def test_transactional_enqueue_commits_and_rolls_back_with_the_caller(postgres_url: str) -> None:
    app = Offload(postgres_url, default_retries=0)

    @app.task
    def welcome(user: str) -> str:
        return f"hello {user}"

    conninfo = parse_postgres_url(postgres_url).conninfo
    with psycopg.connect(conninfo) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS users (name text)")
        conn.commit()
        conn.execute("INSERT INTO users VALUES ('ann')")
        committed = welcome.enqueue("ann", connection=conn)
        # not visible outside the transaction until it commits
        with pytest.raises(Exception, match="no job"):
            app.job(committed.id)
        conn.commit()
        conn.execute("INSERT INTO users VALUES ('bob')")
        rolled_back = welcome.options(connection=conn).enqueue("bob")
        conn.rollback()
    assert app.job(committed.id).state is JobState.QUEUED
    WorkerThread(app, burst=True).__enter__().join()
    assert committed.result(timeout=10) == "hello ann"
    with pytest.raises(Exception, match="no job"):
        app.job(rolled_back.id)
    assert app.backend.blocking.query(QueryParams(filter=JobFilter(), limit=10)).jobs == [
        committed.refresh().record
    ]
    app.close()


def test_async_transactional_enqueue(postgres_url: str) -> None:
    app = Offload(postgres_url)

    @app.task
    def noop(n: int) -> int:
        return n

    conninfo = parse_postgres_url(postgres_url).conninfo

    async def scenario() -> tuple[str, str]:
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            kept = await noop.enqueue_async(1, connection=conn)
            await conn.commit()
            dropped = await noop.enqueue_async(2, connection=conn)
            await conn.rollback()
        return kept.id, dropped.id

    kept_id, dropped_id = asyncio.run(scenario())
    assert app.job(kept_id).state is JobState.QUEUED
    with pytest.raises(Exception, match="no job"):
        app.job(dropped_id)
    app.close()


def test_transactional_enqueue_is_refused_where_it_cannot_work(tmp_path: Path) -> None:
    app = Offload(f"sqlite:///{tmp_path}/x.db")

    @app.task
    def noop() -> None: ...

    with pytest.raises(Exception, match="cannot do"):
        noop.options(connection=object()).enqueue()


def test_workers_survive_a_database_restart(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = postgres_server.url(postgres_server.create_database())
    logs = tmp_path / "executions"
    logs.mkdir()
    env = {**os.environ, "OFFLOAD_URL": url, "EXEC_LOG_DIR": str(logs),
           "PYTHONPATH": os.path.dirname(__file__)}  # fmt: skip
    app = pg_app.app
    app._backend = None
    app.url = url
    jobs = 1500
    pg_app.tick.enqueue_many([pg_app.tick.s(n) for n in range(jobs)])
    worker_logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "offload",
                "worker",
                "pg_app:app",
                "-c",
                "4",
                "--log-level",
                "WARNING",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )
        for log in worker_logs
    ]
    try:
        wait_until(lambda: sum(1 for _ in logs.iterdir()) > 0, what="workers to start")
        app.close()  # our own pool would otherwise hold dead connections across the restart
        postgres_server.restart(down_s=2.0)
        app._backend = None
        deadline = time.monotonic() + 180

        def finished() -> int:
            try:
                stats = app.backend.blocking.stats()
            except Exception:
                return 0
            return sum(row.counts["succeeded"] + row.counts["dead"] for row in stats)

        while finished() < jobs and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
    states = collections.Counter(
        j.state for j in app.backend.blocking.query(QueryParams(limit=jobs + 1)).jobs
    )
    executions = collections.Counter[int]()
    for log in logs.iterdir():
        executions.update(int(line) for line in log.read_text().split())
    stderr = "".join(log.read_text() for log in worker_logs)
    app.close()
    outage = [
        line for line in stderr.splitlines() if "unreachable" in line or "unavailable" in line
    ]
    print(f"\nrestart test: {jobs} jobs, states {dict(states)}, "
          f"{sum(c - 1 for c in executions.values())} duplicate executions; "
          f"first outage log line: {outage[:1]}")  # fmt: skip
    assert states == {JobState.SUCCEEDED: jobs}
    assert all(executions[n] >= 1 for n in range(jobs))
    assert "unreachable" in stderr or "unavailable" in stderr  # the outage was logged clearly
    assert "Traceback" not in stderr


def test_idle_worker_wakes_on_notify(postgres_url: str) -> None:
    app = Offload(postgres_url)

    @app.task
    def ping() -> str:
        return "pong"

    with WorkerThread(app, idle_check_s=3600):  # no polling: only NOTIFY can wake it
        time.sleep(0.3)
        assert ping.enqueue().result(timeout=20) == "pong"
    app.close()
