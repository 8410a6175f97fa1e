"""PostgreSQL live events: heard across processes, cut into notifications that fit, sent only
while someone subscribes, and a lost connection ends the stream instead of hanging it."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

import offload
from offload.backends.base import (
    BackendError,
    ClaimParams,
    EnqueueParams,
    EventStream,
    IdsParams,
    PublishParams,
    SubscribeParams,
)
from offload.backends.postgres import PostgresBackend, postgres_backend
from offload.ids import IdGenerator
from offload.records import CONTROL_KINDS, EventKind, JobEvent, NewJob

new_id = IdGenerator()
WAIT_S = 20.0  # far past any delivery on a loaded machine: reaching it means a hang

_spec = importlib.util.spec_from_file_location(
    "fault_proxy", Path(__file__).parent / "faults" / "proxy.py"
)
assert _spec is not None and _spec.loader is not None
fault_proxy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fault_proxy)


def _job(**fields: Any) -> NewJob:
    return NewJob(**{"id": new_id(), "task": "t.echo", "queue": "default",
                     "payload": b"[[1], {}]", **fields})  # fmt: skip


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


async def _events(stream: EventStream, wanted: int) -> list[list[JobEvent]]:
    """Steps (lists) until ``wanted`` events came, or fail after WAIT_S."""
    steps: list[list[JobEvent]] = []
    async with asyncio.timeout(WAIT_S):
        while sum(map(len, steps)) < wanted:
            steps.append(await anext(aiter(stream)))
    return steps


def test_a_subscriber_hears_the_steps_another_process_takes(
    backend: PostgresBackend, postgres_url: str, runner: asyncio.Runner
) -> None:
    job_id = new_id()
    script = f"""
import asyncio
from offload.backends.base import ClaimParams, EnqueueParams, FinishParams, Outcome, OutcomeKind
from offload.backends.postgres import postgres_backend
from offload.records import NewJob

async def main():
    b = postgres_backend({postgres_url!r})
    await b.enqueue(EnqueueParams(jobs=[NewJob(id={job_id!r}, task="t.echo", queue="elsewhere",
                                               payload=b"[[1], {{}}]", owner="ann")]))
    (job,) = await b.claim(ClaimParams(queues=["elsewhere"], limit=1, worker="w-other",
                                       lease_s=30))
    outcome = Outcome(id=job.id, delivery=job.delivery, kind=OutcomeKind.SUCCEEDED)
    await b.finish(FinishParams(outcomes=[outcome]))
    await b.close()

asyncio.run(main())
"""
    src = str(Path(offload.__file__).resolve().parents[1])  # the same code as this process
    env = {**os.environ, "PYTHONPATH": src}

    async def scenario() -> list[JobEvent]:
        async with backend.subscribe() as stream:
            done = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-c", script], env=env, capture_output=True,
                text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            return [e for step in await _events(stream, 3) for e in step]

    events = runner.run(scenario())
    assert [(e.kind, e.id) for e in events] == [
        (EventKind.ENQUEUED, job_id), (EventKind.STARTED, job_id), (EventKind.SUCCEEDED, job_id)
    ]  # fmt: skip
    assert events[0].owner == "ann" and events[1].worker == events[2].worker == "w-other"


def _listening_pids(conninfo: str, channel: str) -> list[int]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE query = %s",
            (f'LISTEN "{channel}"',),
        ).fetchall()
    return [pid for (pid,) in rows]


def test_a_killed_connection_ends_the_stream_with_backend_error(
    backend: PostgresBackend, runner: asyncio.Runner
) -> None:
    async def scenario() -> BaseException:
        async with backend.subscribe() as stream:
            (pid,) = _listening_pids(backend.config.conninfo, backend.st.events)
            with psycopg.connect(backend.config.conninfo, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            with pytest.raises(BackendError) as raised:
                async with asyncio.timeout(WAIT_S):
                    await anext(aiter(stream))
            return raised.value

    assert "PostgreSQL" in str(runner.run(scenario()))


def test_a_silent_connection_ends_the_stream_with_backend_error(
    postgres_url: str, runner: asyncio.Runner
) -> None:
    proxy = fault_proxy.SilentProxy(urlsplit(postgres_url).port).start()
    port = urlsplit(postgres_url).port
    through = postgres_url.replace(f":{port}/", f":{proxy.port}/", 1) + "&timeout_s=1"
    backend = postgres_backend(through)

    async def scenario() -> None:
        async with backend.subscribe() as stream:
            proxy.partition()  # no byte passes, no socket closes: only a deadline can tell
            with pytest.raises(BackendError, match="did not answer"):
                async with asyncio.timeout(WAIT_S):
                    await anext(aiter(stream))

    try:
        runner.run(scenario())
    finally:
        proxy.heal()
        runner.run(backend.close())
        proxy.close()


def test_a_big_step_comes_in_order_in_notifications_that_fit(
    backend: PostgresBackend, runner: asyncio.Runner
) -> None:
    """Owners that JSON must escape, even the text where a long step is cut, and one event
    too big for any notification: that one is left out, the others all come, in order."""
    tricky = ['},{"kind":"x"', "ünïcødé ✓", 'quote " back\\slash', "tab\tnew\nline"]
    jobs = [_job(owner=tricky[i % len(tricky)] * 20) for i in range(300)]
    huge = _job(task="t." + "x" * 9000)
    jobs.insert(150, huge)

    async def scenario() -> list[list[JobEvent]]:
        async with backend.subscribe() as stream:
            await backend.enqueue(EnqueueParams(jobs=jobs))
            return await _events(stream, 300)

    steps = runner.run(scenario())
    assert len(steps) > 1, "300 events of ~400 bytes cannot fit one notification"
    events = [e for step in steps for e in step]
    assert [e.id for e in events] == [j.id for j in jobs if j is not huge]
    assert [e.owner for e in events] == [j.owner for j in jobs if j is not huge]


def test_steps_send_nothing_while_nobody_subscribes(
    backend: PostgresBackend, runner: asyncio.Runner
) -> None:
    """A bare LISTEN (no subscriber's lock) hears nothing; once a stream is open it hears
    what the stream hears."""
    with psycopg.connect(backend.config.conninfo, autocommit=True) as bare:
        bare.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(backend.st.events)))
        backend.blocking.enqueue(EnqueueParams(jobs=[_job()]))
        assert list(bare.notifies(timeout=0.5)) == []

        async def scenario() -> None:
            async with backend.subscribe() as stream:
                await backend.enqueue(EnqueueParams(jobs=[_job()]))
                await _events(stream, 1)

        runner.run(scenario())
        assert len(list(bare.notifies(timeout=2, stop_after=1))) == 1


def test_two_schemas_never_hear_each_other(postgres_database: str, runner: asyncio.Runner) -> None:
    one = postgres_backend(f"{postgres_database}?schema=events_one")
    two = postgres_backend(f"{postgres_database}?schema=events_two")

    async def scenario() -> list[JobEvent]:
        async with one.subscribe() as stream:
            await two.enqueue(EnqueueParams(jobs=[_job()]))
            mine = _job()
            await one.enqueue(EnqueueParams(jobs=[mine]))
            (step,) = await _events(stream, 1)
            assert [e.id for e in step] == [mine.id]
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await anext(aiter(stream))
            return step

    try:
        runner.run(scenario())
    finally:
        runner.run(one.close())
        runner.run(two.close())


def test_published_events_come_as_given(backend: PostgresBackend, runner: asyncio.Runner) -> None:
    given = [
        JobEvent(kind=EventKind.QUEUE_PAUSED, queue='odd "queue" },{"kind":', at=1.5),
        JobEvent(kind=EventKind.QUEUE_RESUMED, queue="docs", message="ünï", at=2.0),
    ]

    async def scenario() -> list[list[JobEvent]]:
        async with backend.subscribe() as stream:
            await backend.publish(PublishParams(events=given))
            return await _events(stream, 2)

    assert runner.run(scenario()) == [given]


def test_a_step_without_changes_pushes_nothing(
    backend: PostgresBackend, runner: asyncio.Runner
) -> None:
    async def scenario() -> None:
        async with backend.subscribe() as stream:
            await backend.cancel(IdsParams(ids=["no-such-job"]))
            await backend.delete(IdsParams(ids=["no-such-job"]))
            marker = _job()
            await backend.enqueue(EnqueueParams(jobs=[marker]))
            (step,) = await _events(stream, 1)
            assert [e.id for e in step] == [marker.id]

    runner.run(scenario())


def test_a_control_kinds_subscription_is_no_listener_and_hears_only_those(
    backend: PostgresBackend, runner: asyncio.Runner
) -> None:
    """Every worker subscribes to the control kinds: that must not make every step build
    and send its events. A cancel, a delete and a publish reach it all the same."""
    with psycopg.connect(backend.config.conninfo, autocommit=True) as bare:
        bare.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(backend.st.events)))
        cancelled, deleted, busy = _job(), _job(), _job()
        paused = JobEvent(kind=EventKind.QUEUE_PAUSED, queue="docs", at=1.0)

        async def scenario() -> list[JobEvent]:
            async with backend.subscribe(SubscribeParams(kinds=CONTROL_KINDS)) as stream:
                await backend.enqueue(EnqueueParams(jobs=[cancelled, deleted, busy]))
                await backend.claim(
                    ClaimParams(queues=["default"], limit=1, worker="w", lease_s=30)
                )
                await backend.cancel(IdsParams(ids=[cancelled.id]))
                await backend.delete(IdsParams(ids=[deleted.id]))
                await backend.publish(PublishParams(events=[paused]))
                return [e for step in await _events(stream, 3) for e in step]

        heard = runner.run(scenario())
        assert [(e.kind, e.id) for e in heard] == [
            (EventKind.CANCELLED, cancelled.id), (EventKind.DELETED, deleted.id),
            (EventKind.QUEUE_PAUSED, ""),
        ]  # fmt: skip
        assert list(bare.notifies(timeout=0.5)) == []  # no step built events for the busy channel


def test_a_full_subscriber_hears_a_cancel_once_beside_a_control_one(
    backend: PostgresBackend, runner: asyncio.Runner
) -> None:
    job, other = _job(), _job()
    backend.blocking.enqueue(EnqueueParams(jobs=[job, other]))

    async def scenario() -> tuple[list[JobEvent], list[JobEvent]]:
        async with (
            backend.subscribe() as full,
            backend.subscribe(SubscribeParams(kinds=frozenset({EventKind.CANCELLED}))) as control,
        ):
            await backend.cancel(IdsParams(ids=[job.id]))
            await backend.retry(IdsParams(ids=[job.id]))
            await backend.cancel(IdsParams(ids=[other.id]))
            every = [e for step in await _events(full, 3) for e in step]
            cancels = [e for step in await _events(control, 2) for e in step]
            return every, cancels

    every, cancels = runner.run(scenario())
    assert [(e.kind, e.id) for e in every] == [
        (EventKind.CANCELLED, job.id), (EventKind.ENQUEUED, job.id),
        (EventKind.CANCELLED, other.id),
    ]  # fmt: skip
    assert [(e.kind, e.id) for e in cancels] == [
        (EventKind.CANCELLED, job.id),
        (EventKind.CANCELLED, other.id),
    ]
