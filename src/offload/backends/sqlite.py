"""The embedded default: one SQLite file in WAL mode, safe for several worker processes.

Every write is one ``BEGIN IMMEDIATE`` transaction, so claims never race; each
thread has its own connection. SQLite has no notification, so other processes
notice new work through the WAL file, which every commit writes: an inotify watch
on Linux (``filewatch``), elsewhere a cheap ``stat`` polled with a backoff capped
at 50 ms. This process's own steps wake its workers and subscribers at once. Each
step logs its events, ends its jobs' attempts and stores what their ends set off
(follow-ups, a batch's count) in its own transaction (``sqlite_steps``, ``sqlite_events``,
``sqlite_endings``).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from offload.backends import sqlite_steps as steps
from offload.backends.base import (
    BackendError,
    BatchQueryParams,
    Capabilities,
    ClaimParams,
    CountParams,
    CountsParams,
    CountsQuery,
    EnqueueParams,
    FinishParams,
    FinishResult,
    HeartbeatParams,
    HeartbeatResult,
    IdsParams,
    LockParams,
    MarkNamesParams,
    MarkParams,
    Page,
    ProgressParams,
    PruneParams,
    PublishParams,
    PurgeParams,
    QueryParams,
    QueueStats,
    ReapedJob,
    ReapParams,
    WorkerBeatParams,
)
from offload.backends.filewatch import CAN_WATCH_FILES
from offload.backends.rows import job_from_row
from offload.backends.sqlite_connect import Connections, translated
from offload.backends.sqlite_counts import read_counts, record_counts
from offload.backends.sqlite_endings import list_batches
from offload.backends.sqlite_events import (
    HeldJobs,
    Listened,
    beat_worker,
    last_event_seq,
    listen,
    live_workers,
    log_events,
    read_events,
)
from offload.backends.sqlite_prune import prune_all
from offload.backends.sqlite_reads import count_jobs, query_page, queue_stats
from offload.backends.sqlite_schema import (
    Q,
    _in,
    apply_schema,
    fresh_schema,
    migrations,
    parse_sqlite_url,
)
from offload.backends.store import Notifier, ThreadedBackend
from offload.backends.values import (
    check_new_jobs,
    check_outcomes,
    check_span,
)
from offload.records import BatchRecord, JobEvent, JobRecord, MinuteCounts, WorkerInfo

T = TypeVar("T")
#: Rows one prune step deletes in its own transaction.


class SqliteStore:
    # Where the WAL file can be watched, other processes' commits wake waiters; a watch
    # the kernel refuses falls back to polling inside wait, so nothing is missed.
    capabilities = Capabilities(push_wakeups=CAN_WATCH_FILES, shared_between_processes=True)
    blocks = True

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "full",
        busy_timeout_ms: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._clock = clock
        self._db = Connections(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
        self._conn = self._db.get
        self._write = self._db.write
        self._notifier = Notifier()
        self._held = HeldJobs()
        self._listened = Listened()
        self._wal_path = path + "-wal"
        try:
            apply_schema(self._conn())
        except sqlite3.Error as exc:
            self._db.close()
            why = f"cannot open the SQLite database {path!r}: {exc}"
            if "locked" in str(exc) or "busy" in str(exc):
                why += (
                    f" (waited {busy_timeout_ms} ms); another process holds its write lock: "
                    "stop it, or raise busy_timeout_ms in the URL"
                )
            raise BackendError(why) from exc

    def now(self) -> float:
        return self._clock()

    @translated
    def migrate(self) -> int:
        apply_schema(self._conn())
        return migrations()[-1][0]

    # -- client operations -------------------------------------------------
    @translated
    def enqueue(self, params: EnqueueParams) -> list[JobRecord]:
        check_new_jobs(params.jobs)
        return self._step(steps.enqueue_jobs, params)

    def _step(
        self, step: Callable[..., tuple[T, Sequence[JobEvent]]], *args: Any, hot: bool = False
    ) -> T:
        """``step(conn, *args, now)`` in one write transaction that logs the events it
        returns (the control kinds only, unless someone listens to more); then this
        process's workers and subscribers are woken if there were any. A ``hot`` step
        (claims, finishes) is told whether to build its events at all: ``listened=``."""
        with self._write() as conn:
            now = self._clock()
            listened = self._listened(conn, now)
            if hot:
                result, events = step(conn, *args, now, listened=listened)
            else:
                result, events = step(conn, *args, now)
            logged = log_events(conn, events, now, listened)
        if logged:
            self._notifier.notify()
        return result

    @translated
    def get(self, params: IdsParams) -> list[JobRecord]:
        ids = list(params.ids)
        if not ids:
            return []
        rows = self._conn().execute(_in(Q["get"], ids), ids)
        by_id = {r.id: r for r in map(job_from_row, rows)}
        return [by_id[i] for i in ids if i in by_id]

    @translated
    def query(self, params: QueryParams) -> Page:
        return query_page(self._conn(), params)

    @translated
    def cancel(self, params: IdsParams) -> list[JobRecord]:
        ids = list(params.ids)
        if ids:
            self._step(steps.cancel_jobs, ids)
        return self.get(params)

    @translated
    def retry(self, params: IdsParams) -> list[JobRecord]:
        self._step(steps.retry_jobs, params.ids)
        return self.get(params)

    @translated
    def stats(self) -> list[QueueStats]:
        return queue_stats(self._conn(), self._clock())

    @translated
    def purge(self, params: PurgeParams) -> int:
        states = [s.value for s in params.states]
        if not states:
            return 0
        with self._write() as conn:
            return conn.execute(
                _in(Q["purge"], states), [*states, params.queue, params.queue]
            ).rowcount

    @translated
    def count(self, params: CountParams) -> int:
        return count_jobs(self._conn(), params.filter)

    @translated
    def delete(self, params: IdsParams) -> list[str]:
        ids = list(dict.fromkeys(params.ids))
        if not ids:
            return []
        return self._step(steps.delete_jobs, ids)

    @translated
    def publish(self, params: PublishParams) -> None:
        self._step(lambda conn, now: (None, params.events))

    @translated
    def beat_worker(self, params: WorkerBeatParams) -> None:
        check_span(params.worker.id, "worker ttl_s", params.ttl_s)
        with self._write() as conn:
            beat_worker(conn, params.worker, params.ttl_s, self._clock())

    @translated
    def remove_worker(self, params: IdsParams) -> None:
        with self._write() as conn:
            conn.executemany(Q["remove_worker"], [(i,) for i in params.ids])

    @translated
    def workers(self) -> list[WorkerInfo]:
        return live_workers(self._conn(), self._clock())

    @translated
    def batches(self, params: BatchQueryParams) -> list[BatchRecord]:
        return list_batches(self._conn(), params)

    @translated
    def record_counts(self, params: CountsParams) -> None:
        check_span("counts", "counts ttl_s", params.ttl_s)
        with self._write() as conn:
            record_counts(conn, params.rows, params.ttl_s, self._clock())

    @translated
    def read_counts(self, params: CountsQuery) -> list[MinuteCounts]:
        return read_counts(self._conn(), params, self._clock())

    # -- worker operations -------------------------------------------------
    @translated
    def claim(self, params: ClaimParams) -> list[JobRecord]:
        queues = list(params.queues)
        # A read first: idle workers woken by any commit must not queue up for the write lock.
        probe = self._conn().execute(_in(Q["any_ready"], queues), [*queues, self._clock()])
        if not probe.fetchall():  # fetchall ends the statement, so no read snapshot lingers
            return []
        jobs, with_follow_ups = self._step(steps.claim_jobs, params, hot=True)
        self._held.claimed(jobs, with_follow_ups)  # once committed
        return jobs

    @translated
    def heartbeat(self, params: HeartbeatParams) -> HeartbeatResult:
        lost = []
        with self._write() as conn:
            now = self._clock()
            for lease in params.leases:
                updated = conn.execute(
                    Q["heartbeat"], (now, params.lease_s, lease.id, lease.delivery)
                ).rowcount
                if not updated:
                    lost.append(lease.id)
        return HeartbeatResult(lost=lost)

    @translated
    def finish(self, params: FinishParams) -> FinishResult:
        check_outcomes(params.outcomes)
        rejected = self._step(steps.finish_outcomes, params.outcomes, self._held, hot=True)
        return FinishResult(rejected=rejected)

    @translated
    def report_progress(self, params: ProgressParams) -> None:
        for u in self._step(steps.report_progress, params.updates):
            self._held.progressed(u.id, u.delivery, u.progress)

    # -- maintenance -------------------------------------------------------
    @translated
    def promote_due(self) -> int:
        with self._write() as conn:
            return conn.execute(Q["promote_due"], (self._clock(),)).rowcount

    @translated
    def reap_expired(self, params: ReapParams) -> list[ReapedJob]:
        return self._step(steps.reap_expired, params.max_crashes)

    @translated
    def prune(self, params: PruneParams) -> int:
        return prune_all(self._db, params, self._clock())

    @translated
    def lock(self, params: LockParams) -> bool:
        with self._write() as conn:
            now = self._clock()
            taken = conn.execute(
                Q["lock"],
                (params.name, params.owner, now + params.ttl_s, now),
            ).rowcount
        return bool(taken)

    @translated
    def unlock(self, params: LockParams) -> None:
        with self._write() as conn:
            conn.execute(Q["unlock"], (params.name, params.owner))

    @translated
    def get_marks(self, params: MarkNamesParams) -> dict[str, str]:
        names = list(dict.fromkeys(params.names))
        if not names:
            return {}
        args = [*names, self._clock()]
        return dict(self._conn().execute(_in(Q["get_marks"], names), args).fetchall())

    @translated
    def set_mark(self, params: MarkParams) -> bool:
        # BEGIN IMMEDIATE serialises writers across processes: the loser of a race finds the
        # winner's value, so its one conditional statement changes nothing.
        check_span(params.name, "mark ttl_s", params.ttl_s)
        with self._write() as conn:
            now = self._clock()
            expires_at = None if params.ttl_s is None else now + params.ttl_s
            if params.expected is None:
                args: tuple[Any, ...] = (params.name, params.value, expires_at, now)
                stored = conn.execute(Q["create_mark"], args).rowcount
            else:
                args = (params.value, expires_at, params.name, params.expected, now)
                stored = conn.execute(Q["update_mark"], args).rowcount
        return bool(stored)

    # -- wake-ups ----------------------------------------------------------
    @translated
    def next_ready_at(self, queues: Sequence[str]) -> float | None:
        queues = list(queues)
        row = self._conn().execute(_in(Q["next_ready"], queues), queues).fetchone()
        return None if row is None else row[0]

    def change_marker(self) -> object:
        try:
            st = os.stat(self._wal_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def changed_file(self) -> str | None:
        return self._wal_path

    @translated
    def last_event_seq(self) -> int:
        return last_event_seq(self._conn())

    @translated
    def listen(self, ttl_s: float) -> int:
        with self._write() as conn:
            return listen(conn, self._clock(), ttl_s)

    @translated
    def read_events(self, after_seq: int, limit: int) -> list[tuple[int, list[JobEvent]]]:
        return read_events(self._conn(), after_seq, limit)

    def add_listener(self, callback: Callable[[], None]) -> None:
        self._notifier.add(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        self._notifier.remove(callback)

    def close(self) -> None:
        self._db.close()


def sqlite_backend(url: str, clock: Callable[[], float] | None = None) -> ThreadedBackend:
    path, options = parse_sqlite_url(url)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise BackendError(f"cannot open {path!r}: the folder {folder!r} does not exist")
    store = SqliteStore(
        path,
        synchronous=options.get("synchronous", "full"),
        busy_timeout_ms=int(options.get("busy_timeout_ms", 10_000)),
        clock=clock or time.time,
    )
    return ThreadedBackend(store)


__all__ = [
    "SqliteStore",
    "apply_schema",
    "fresh_schema",
    "migrations",
    "parse_sqlite_url",
    "sqlite_backend",
]
