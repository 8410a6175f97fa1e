"""SQLite only: live events across processes, the event log's upkeep, the worker
registry's, and an old database upgraded to attempt history.

The conformance suite covers events made by the subscriber's own process; here a
child process (``python -c``) shares only the database file with the subscriber.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import msgspec
import pytest

from offload.backends import sqlite_reads
from offload.backends.base import (
    ClaimParams,
    CountParams,
    EnqueueParams,
    EventStream,
    FinishParams,
    IdsParams,
    JobFilter,
    Outcome,
    OutcomeKind,
    ProgressParams,
    ProgressUpdate,
    PruneParams,
    PublishParams,
    QueryParams,
    WorkerBeatParams,
)
from offload.backends.event_wire import EVENT_RETENTION_S
from offload.backends.sqlite import SqliteStore, migrations, sqlite_backend
from offload.backends.sqlite_schema import _statements
from offload.ids import IdGenerator
from offload.records import AttemptOutcome, ErrorInfo, EventKind, JobEvent, NewJob, WorkerInfo
from offload.states import JobState

#: A subscriber's mark that outlasts any test clock: steps log every kind of event.
LISTENED_S = 1e12

#: Guards against a hung child or a subscriber never woken; never a timing assertion.
WAIT_S = 30.0
START = 1_700_000_000.0

new_id = IdGenerator()
BOOM = ErrorInfo(type="ValueError", message="boom")

#: argv: database path, job id. Enqueues, waits for a line on stdin, then runs the job.
CHILD = """
import sys
from offload.backends.base import (
    ClaimParams, EnqueueParams, FinishParams, Outcome, OutcomeKind, ProgressParams,
    ProgressUpdate,
)
from offload.backends.sqlite import SqliteStore
from offload.records import NewJob

store = SqliteStore(sys.argv[1])
job = NewJob(id=sys.argv[2], task="child.task", queue="q", payload=b"[]", owner="o1")
store.enqueue(EnqueueParams(jobs=[job]))
print("enqueued", flush=True)
sys.stdin.readline()
(claimed,) = store.claim(ClaimParams(queues=["q"], limit=1, worker="child-w", lease_s=30))
update = ProgressUpdate(id=claimed.id, delivery=claimed.delivery, progress=0.5, message="half")
store.report_progress(ProgressParams(updates=[update]))
done = Outcome(id=claimed.id, delivery=claimed.delivery, kind=OutcomeKind.SUCCEEDED)
store.finish(FinishParams(outcomes=[done]))
store.close()
"""


class Clock:
    def __init__(self) -> None:
        self.now = START

    def time(self) -> float:
        return self.now


async def _next(stream: EventStream, wanted: int) -> list[JobEvent]:
    got: list[JobEvent] = []
    iterator = aiter(stream)
    async with asyncio.timeout(WAIT_S):
        while len(got) < wanted:
            got.extend(await anext(iterator))
    return got


def _job(payload: bytes = b"[]") -> NewJob:
    return NewJob(id=new_id(), task="t", queue="q", payload=payload)


def test_a_subscriber_gets_the_steps_of_another_process(tmp_path: Path) -> None:
    path = str(tmp_path / "offload.db")
    job_id = new_id()

    async def main() -> None:
        backend = sqlite_backend("sqlite:///" + path)
        try:
            async with backend.subscribe() as stream:
                child = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", CHILD, path, job_id,
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                assert child.stdin is not None and child.stdout is not None
                try:
                    async with asyncio.timeout(WAIT_S):
                        assert await child.stdout.readline() == b"enqueued\n"
                    # the child is still running: the event arrived live, not at its exit
                    (enqueued,) = await _next(stream, 1)
                    child.stdin.write(b"go\n")
                    await child.stdin.drain()
                    started, progress, done = await _next(stream, 3)
                    async with asyncio.timeout(WAIT_S):
                        assert await child.wait() == 0
                finally:
                    if child.returncode is None:
                        child.kill()
                        await child.wait()
        finally:
            await backend.close()
        assert (enqueued.kind, enqueued.id, enqueued.owner, enqueued.task) == (
            EventKind.ENQUEUED, job_id, "o1", "child.task")  # fmt: skip
        assert (started.kind, started.worker, started.attempt) == (EventKind.STARTED, "child-w", 1)
        assert (progress.kind, progress.progress, progress.message) == (
            EventKind.PROGRESS, 0.5, "half")  # fmt: skip
        assert (done.kind, done.state, done.worker) == (
            EventKind.SUCCEEDED, JobState.SUCCEEDED, "child-w")  # fmt: skip

    asyncio.run(main())


def test_prune_drops_old_events_but_the_newest_so_numbers_are_never_reused(
    tmp_path: Path,
) -> None:
    clock = Clock()
    store = SqliteStore(str(tmp_path / "offload.db"), clock=clock.time)
    store.listen(LISTENED_S)  # read straight from the log: ask for every kind
    try:
        for _ in range(5):
            store.enqueue(EnqueueParams(jobs=[_job()]))
        seen = store.last_event_seq()
        assert seen == 5
        clock.now += EVENT_RETENTION_S + 1
        store.prune(PruneParams(finished_before=0))
        assert [s for s, _ in store.read_events(0, 100)] == [seen]
        fresh = _job()
        store.enqueue(EnqueueParams(jobs=[fresh]))
        ((seq, (event,)),) = store.read_events(seen, 100)
        assert seq > seen and event.id == fresh.id
        clock.now += 1
        store.prune(PruneParams(finished_before=0))  # the old one goes, the young one stays
        assert [s for s, _ in store.read_events(0, 100)] == [seq]
    finally:
        store.close()


def test_prune_works_through_many_steps(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteStore(str(tmp_path / "offload.db"), clock=clock.time)
    store.listen(LISTENED_S)  # read straight from the log: ask for every kind
    try:
        conn = sqlite3.connect(tmp_path / "offload.db", isolation_level=None)
        conn.executemany(
            "INSERT INTO offload_events (at, body) VALUES (?, '[]')",
            [(START - EVENT_RETENTION_S - 1,)] * 2500,
        )
        conn.close()
        store.publish(PublishParams(events=[JobEvent(kind=EventKind.QUEUE_PAUSED, queue="q")]))
        store.prune(PruneParams(finished_before=0))
        ((_, (paused,)),) = store.read_events(0, 10_000)
        assert paused.kind is EventKind.QUEUE_PAUSED
    finally:
        store.close()


def test_a_logged_step_that_does_not_decode_is_skipped(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "offload.db"))
    store.listen(LISTENED_S)  # read straight from the log: ask for every kind
    try:
        conn = sqlite3.connect(tmp_path / "offload.db", isolation_level=None)
        conn.execute("INSERT INTO offload_events (at, body) VALUES (0, 'garbage')")
        conn.execute("""INSERT INTO offload_events (at, body) VALUES (0, '[{"kind": "?"},
                        {"kind": "queue_paused", "queue": "q"}]')""")
        conn.close()
        assert [(s, [e.queue for e in events]) for s, events in store.read_events(0, 10)] == [
            (1, []), (2, ["q"])]  # fmt: skip
    finally:
        store.close()


def test_expired_workers_are_pruned_and_a_bad_row_is_left_out(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "offload.db"
    store = SqliteStore(str(path), clock=clock.time)
    try:
        info = WorkerInfo(id="w1", host="h", pid=1, queues=["q"], concurrency=1, started_at=0)
        store.beat_worker(WorkerBeatParams(worker=info, ttl_s=10))
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("INSERT INTO offload_workers VALUES ('w0', 'garbage', ?)", (START + 60,))
        assert [w.id for w in store.workers()] == ["w1"]
        clock.now += 11
        store.prune(PruneParams(finished_before=0))
        assert [r[0] for r in conn.execute("SELECT id FROM offload_workers")] == ["w0"]
        conn.close()
    finally:
        store.close()


def test_an_old_database_upgrades_and_its_jobs_gain_a_history(tmp_path: Path) -> None:
    path = tmp_path / "offload.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for version, sql in migrations():
        if version > 4:
            break
        for statement in _statements(sql):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 4")
    conn.execute(
        "INSERT INTO offload_jobs (id, task, queue, state, payload, run_at, created_at) "
        "VALUES ('old-1', 't', 'q', 'queued', '[]', 0, 0)"
    )
    conn.close()
    store = SqliteStore(str(path))
    store.listen(LISTENED_S)
    try:
        (old,) = store.get(IdsParams(ids=["old-1"]))
        assert old.attempts == [] and old.unreadable is None
        (job,) = store.claim(ClaimParams(queues=["q"], limit=1, worker="w", lease_s=30))
        done = Outcome(id=job.id, delivery=job.delivery, kind=OutcomeKind.SUCCEEDED)
        assert store.finish(FinishParams(outcomes=[done])).rejected == []
        (old,) = store.get(IdsParams(ids=["old-1"]))
        assert [a.outcome for a in old.attempts] == [AttemptOutcome.SUCCEEDED]
        assert [e.kind for _, events in store.read_events(0, 10) for e in events] == [
            EventKind.STARTED, EventKind.SUCCEEDED]  # fmt: skip
    finally:
        store.close()


def test_a_history_that_does_not_decode_starts_again_at_the_next_attempt(
    tmp_path: Path,
) -> None:
    path = tmp_path / "offload.db"
    store = SqliteStore(str(path))
    try:
        store.enqueue(EnqueueParams(jobs=[_job()]))
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute('UPDATE offload_jobs SET attempts = \'{"not": "a list"}\'')
        conn.close()
        (job,) = store.claim(ClaimParams(queues=["q"], limit=1, worker="w", lease_s=30))
        assert job.unreadable is None and job.attempts == []  # the job runs: history is for people
        done = Outcome(id=job.id, delivery=job.delivery, kind=OutcomeKind.DEAD)
        assert store.finish(FinishParams(outcomes=[done])).rejected == []
        (stored,) = store.get(IdsParams(ids=[job.id]))
        assert stored.unreadable is None
        assert [(a.number, a.worker, a.outcome) for a in stored.attempts] == [
            (1, "w", AttemptOutcome.FAILED)]  # fmt: skip
    finally:
        store.close()


def test_text_takes_a_backslash_literally(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "offload.db"))
    try:
        hit = _job(payload=b'["C:\\\\temp\\\\a_b"]')
        store.enqueue(EnqueueParams(jobs=[hit, _job(payload=b'["C:tempab"]')]))
        for needle in ("\\\\temp", "\\", "a_b"):
            page = store.query(QueryParams(filter=JobFilter(text=needle), limit=10))
            assert [j.id for j in page.jobs] == [hit.id], needle
    finally:
        store.close()


def test_the_created_range_is_served_by_its_index(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "offload.db"))
    try:
        conn = sqlite3.connect(tmp_path / "offload.db", isolation_level=None)
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT count(*) FROM offload_jobs "
            "WHERE created_at >= ? AND created_at < ?",
            (0, 1),
        ).fetchall()
        conn.close()
        assert "offload_jobs_created" in " ".join(str(step[-1]) for step in plan)
    finally:
        store.close()


def test_a_created_range_pages_alike_from_its_index_or_in_id_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_reads, "SORT_MAX", 3)  # ranges of more than 3 go in id order
    clock = Clock()
    store = SqliteStore(str(tmp_path / "offload.db"), clock=clock.time)
    try:
        ids = []
        for _ in range(10):
            ids += [j.id for j in store.enqueue(EnqueueParams(jobs=[_job()]))]
            clock.now += 1
        for low, high in ((2, 4), (1, 8), (0, 10)):  # 2 jobs: the index; 7 and 10: id order
            window = JobFilter(created_after=START + low, created_before=START + high)
            got, cursor = [], None
            while True:
                page = store.query(QueryParams(filter=window, limit=2, cursor=cursor))
                got += [j.id for j in page.jobs]
                if (cursor := page.next_cursor) is None:
                    break
            assert got == sorted(ids[low:high], reverse=True)
            assert store.count(CountParams(filter=window)) == high - low
    finally:
        store.close()


def test_a_first_attempt_success_stores_no_history_yet_reads_one(tmp_path: Path) -> None:
    path = tmp_path / "offload.db"
    store = SqliteStore(str(path))
    try:
        first, second = (
            _job(),
            NewJob(id=new_id(), task="t", queue="q", payload=b"[]", max_attempts=2),
        )
        store.enqueue(EnqueueParams(jobs=[first, second]))
        claimed = store.claim(ClaimParams(queues=["q"], limit=2, worker="w", lease_s=30))
        kinds = {first.id: OutcomeKind.SUCCEEDED, second.id: OutcomeKind.RETRY}
        outcomes = [Outcome(id=j.id, delivery=j.delivery, kind=kinds[j.id]) for j in claimed]
        store.finish(FinishParams(outcomes=outcomes))
        (again,) = store.claim(ClaimParams(queues=["q"], limit=1, worker="w2", lease_s=30))
        done = Outcome(id=again.id, delivery=again.delivery, kind=OutcomeKind.SUCCEEDED)
        store.finish(FinishParams(outcomes=[done]))
        conn = sqlite3.connect(path, isolation_level=None)
        stored = dict(conn.execute("SELECT id, attempts FROM offload_jobs").fetchall())
        conn.close()
        assert stored[first.id] is None and stored[second.id] is not None
        one, two = store.get(IdsParams(ids=[first.id, second.id]))
        assert [(a.number, a.worker, a.outcome) for a in one.attempts] == [
            (1, "w", AttemptOutcome.SUCCEEDED)]  # fmt: skip
        assert (one.attempts[0].started_at, one.attempts[0].ended_at) == (
            one.started_at, one.finished_at)  # fmt: skip
        assert [(a.number, a.worker, a.outcome) for a in two.attempts] == [
            (1, "w", AttemptOutcome.FAILED), (2, "w2", AttemptOutcome.SUCCEEDED)]  # fmt: skip
    finally:
        store.close()


@pytest.mark.parametrize("kind", list(OutcomeKind))
def test_a_finish_pushes_the_same_event_whichever_process_claimed_the_job(
    tmp_path: Path, kind: OutcomeKind
) -> None:
    """The claiming process builds the event from what it kept; another reads the row."""
    clock = Clock()
    path = str(tmp_path / "offload.db")
    claimer, other = SqliteStore(path, clock=clock.time), SqliteStore(path, clock=clock.time)
    claimer.listen(LISTENED_S)
    try:
        events = []
        for queue, finisher in (("q1", claimer), ("q2", other)):
            job = NewJob(id=new_id(), task="t", queue=queue, payload=b"[]", owner="o", batch="b")
            claimer.enqueue(EnqueueParams(jobs=[job]))
            claim = ClaimParams(queues=[queue], limit=1, worker="w", lease_s=30)
            (held,) = claimer.claim(claim)
            update = ProgressUpdate(id=held.id, delivery=held.delivery, progress=0.25)
            claimer.report_progress(ProgressParams(updates=[update]))
            seen = claimer.last_event_seq()
            outcome = Outcome(id=held.id, delivery=held.delivery, kind=kind, error=BOOM)
            assert finisher.finish(FinishParams(outcomes=[outcome])).rejected == []
            ((_, (event,)),) = claimer.read_events(seen, 10)
            events.append(msgspec.structs.replace(event, id="", queue=""))
        assert events[0] == events[1]
        assert (events[0].worker, events[0].owner, events[0].batch) == ("w", "o", "b")
    finally:
        claimer.close()
        other.close()
