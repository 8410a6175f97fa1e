"""The management API: the one way the CLI, the HTTP API and the dashboard manage jobs.

``app.admin`` answers sync callers (scripts, Flask, Django, the CLI) without an event
loop; ``app.admin.aio`` answers async ones (FastAPI, the dashboard) and adds live
``subscribe``. Both run the same operations (``operations.py``), so they cannot
disagree. Every method that takes ``owner`` sees only that owner's jobs.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO, TypedDict, TypeVar, Unpack

import msgspec

from offload.admin.accounts import AsyncAccounts, SyncAccounts
from offload.admin.activity import Activity, activity
from offload.admin.events import Subscription
from offload.admin.filters import job_filter
from offload.admin.metrics import MinuteStats, counts
from offload.admin.operations import (
    Action,
    JobPage,
    QueueInfo,
    ScheduleInfo,
    act_on_matching,
    act_on_one,
    batch,
    count,
    get,
    list_jobs,
    open_batches,
    queues,
    schedules,
    workers,
)
from offload.admin.relations import Related, related
from offload.admin.requests import RequestStats, RequestTotal, request_stats, request_totals
from offload.admin.totals import Total, totals
from offload.backends.base import JobFilter
from offload.batches import BatchStatus
from offload.bounds import check_queue_name
from offload.files import FileInfo
from offload.idempotency import recall, remember
from offload.ops import Op, run_async, run_sync
from offload.pausing import set_paused
from offload.records import JobRecord, WorkerInfo
from offload.states import JobState
from offload.tokens import NewToken, Role, TokenInfo, link_secret
from offload.users import UserInfo

if TYPE_CHECKING:
    from collections.abc import Iterable

    from offload.app import Offload

T = TypeVar("T")

__all__ = [
    "Action",
    "Activity",
    "Admin",
    "AsyncAdmin",
    "BatchStatus",
    "JobPage",
    "MinuteStats",
    "NewToken",
    "QueueInfo",
    "Related",
    "RequestStats",
    "RequestTotal",
    "Role",
    "ScheduleInfo",
    "Subscription",
    "TokenInfo",
    "Total",
    "UserInfo",
]


class Filters(TypedDict, total=False):
    """What a list, count or bulk action may filter on (all given must match)."""

    state: str | JobState | Iterable[str | JobState] | None
    queue: str | None
    task: str | None
    owner: str | None
    batch: str | None
    text: str | None  # case-insensitive, in the id, task, owner or arguments
    created_after: float | datetime | None
    created_before: float | datetime | None


class _Ops:
    """The operations, built from the caller's arguments (shared by both faces)."""

    def __init__(self, app: Offload) -> None:
        self.app = app

    def known_queues(self) -> list[str]:
        return sorted(
            {self.app.default_queue} | {t.defaults.queue for t in self.app.tasks.values()}
        )

    def filter(self, filters: Filters) -> JobFilter:
        """``filters`` checked, with the text never looking at secret arguments: a search
        that matched them would spell a secret out one guessed character at a time."""
        secret = sorted(n for n, t in self.app.tasks.items() if t.defaults.secret)
        return msgspec.structs.replace(job_filter(**filters), text_skips=secret)

    def bulk(self, action: Action, expected: int, everything: bool, filters: Filters) -> Op[int]:
        return act_on_matching(action, self.filter(filters), expected, everything)

    def batches(self, owner: str | None) -> Op[list[BatchStatus]]:
        found = []
        for batch_id in (yield from open_batches()):
            try:
                found.append((yield from batch(batch_id, owner)))
            except LookupError:
                continue  # no member (of this owner's) left
        return found


class Admin(SyncAccounts):
    """Sync face of the management API (``app.admin``); ``.aio`` is the async one."""

    def __init__(self, app: Offload) -> None:
        self._app = app
        self._ops = _Ops(app)
        self.aio = AsyncAdmin(app)

    def _run(self, op: Op[T]) -> T:
        return run_sync(self._app.backend.blocking, op)

    def get(self, job_id: str, *, owner: str | None = None) -> JobRecord:
        """One job, with its attempts; ``JobNotFound`` if absent (or another owner's)."""
        return self._run(get(job_id, owner))

    def jobs(
        self, *, cursor: str | None = None, limit: int = 50, oldest_first: bool = False,
        **filters: Unpack[Filters],
    ) -> JobPage:  # fmt: skip
        """A page of matching jobs, newest first (``oldest_first``: the other way); pass
        ``next_cursor`` back, with the same order, for the next."""
        return self._run(list_jobs(self._ops.filter(filters), cursor, limit, oldest_first))

    def count(self, *, action: Action | str | None = None, **filters: Unpack[Filters]) -> int:
        """How many jobs match (those ``action`` could change, if given)."""
        return self._run(count(self._ops.filter(filters), _action(action)))

    def cancel(self, job_id: str, *, owner: str | None = None) -> JobRecord:
        """Cancel a job that has not ended; a running one is stopped within about a second."""
        record = self._run(act_on_one(Action.CANCEL, job_id, owner))
        assert record is not None
        return record

    def retry(self, job_id: str, *, owner: str | None = None) -> JobRecord:
        """Queue a dead or cancelled job again (its attempts start over)."""
        record = self._run(act_on_one(Action.RETRY, job_id, owner))
        assert record is not None
        return record

    def delete(self, job_id: str, *, owner: str | None = None) -> None:
        """Forget a job that is not running."""
        self._run(act_on_one(Action.DELETE, job_id, owner))

    def cancel_matching(
        self, *, expected: int, everything: bool = False, **filters: Unpack[Filters]
    ) -> int:
        """Cancel every matching job, given the count you saw (``count(action='cancel')``);
        refused with ``CountChanged`` if more match now. Returns how many were cancelled."""
        return self._run(self._ops.bulk(Action.CANCEL, expected, everything, filters))

    def retry_matching(
        self, *, expected: int, everything: bool = False, **filters: Unpack[Filters]
    ) -> int:
        return self._run(self._ops.bulk(Action.RETRY, expected, everything, filters))

    def delete_matching(
        self, *, expected: int, everything: bool = False, **filters: Unpack[Filters]
    ) -> int:
        return self._run(self._ops.bulk(Action.DELETE, expected, everything, filters))

    def pause(self, queue: str) -> bool:
        """Stop workers claiming from ``queue`` (within about a second); False if it was."""
        return self._run(set_paused(check_queue_name(queue), True))

    def resume(self, queue: str) -> bool:
        return self._run(set_paused(check_queue_name(queue), False))

    def queues(self) -> list[QueueInfo]:
        """Every queue with jobs or tasks: counts by state, lag, and whether it is paused."""
        return self._run(queues(self._ops.known_queues()))

    def workers(self) -> list[WorkerInfo]:
        """Live workers (one that vanished drops out within its lease)."""
        return self._run(workers())

    def schedules(self) -> list[ScheduleInfo]:
        return self._run(schedules(list(self._app.schedules.values())))

    def batch(self, batch_id: str, *, owner: str | None = None) -> BatchStatus:
        return self._run(batch(batch_id, owner))

    def batches(self, *, owner: str | None = None) -> list[BatchStatus]:
        """The batches whose callback has not run yet."""
        return self._run(self._ops.batches(owner))

    def counts(self, *, since: float, until: float | None = None, queue: str | None = None,
               task: str | None = None) -> list[MinuteStats]:  # fmt: skip
        """Per minute, queue and task: enqueued, started, succeeded, retried, dead, and wait
        and run time percentiles (kept ``counts_retention_s``)."""
        return self._run(counts(since, until, queue, task))

    def activity(self, *, span: str = "hour", queue: str | None = None) -> Activity:
        """The last hour or day (``span``): per queue the jobs finished and the wait and
        run time p95, and chart points (a minute each for an hour, 15 for a day)."""
        return self._run(activity(span, queue))

    def related(self, job_id: str, *, owner: str | None = None) -> Related:
        """A job's notices, follow-ups, chain neighbours and batch (``owner``'s only)."""
        return self._run(related(job_id, owner))

    def requests(self, *, since: float, until: float | None = None,
                 app: str | None = None) -> list[RequestStats]:  # fmt: skip
        """Per app timed by ``offload.requests`` (every process's): requests, those over its
        threshold, duration percentiles and the slowest (kept ``counts_retention_s``)."""
        return self._run(request_stats(since, until, app))

    def link_secret(self) -> str:
        """The key signed links are signed with (``$OFFLOAD_SECRET_KEY`` or the store's)."""
        return os.environ.get("OFFLOAD_SECRET_KEY") or self._run(link_secret())

    def files(self, job_id: str, *, owner: str | None = None) -> list[FileInfo]:
        """The files a job's task attached (``JobNotFound`` if not ``owner``'s)."""
        self.get(job_id, owner=owner)
        return self._app.files.of_job(job_id)


class AsyncAdmin(AsyncAccounts):
    """Async face of the management API (``app.admin.aio``), with live ``subscribe``."""

    def __init__(self, app: Offload) -> None:
        self._app = app
        self._ops = _Ops(app)

    async def _run(self, op: Op[T]) -> T:
        return await run_async(self._app.backend, op)

    async def get(self, job_id: str, *, owner: str | None = None) -> JobRecord:
        return await self._run(get(job_id, owner))

    async def jobs(
        self, *, cursor: str | None = None, limit: int = 50, oldest_first: bool = False,
        **filters: Unpack[Filters],
    ) -> JobPage:  # fmt: skip
        return await self._run(list_jobs(self._ops.filter(filters), cursor, limit,
                                         oldest_first))  # fmt: skip

    async def count(self, *, action: Action | str | None = None, **filters: Unpack[Filters]) -> int:
        return await self._run(count(self._ops.filter(filters), _action(action)))

    async def cancel(self, job_id: str, *, owner: str | None = None) -> JobRecord:
        record = await self._run(act_on_one(Action.CANCEL, job_id, owner))
        assert record is not None
        return record

    async def retry(self, job_id: str, *, owner: str | None = None) -> JobRecord:
        record = await self._run(act_on_one(Action.RETRY, job_id, owner))
        assert record is not None
        return record

    async def delete(self, job_id: str, *, owner: str | None = None) -> None:
        await self._run(act_on_one(Action.DELETE, job_id, owner))

    async def cancel_matching(
        self, *, expected: int, everything: bool = False, **filters: Unpack[Filters]
    ) -> int:
        return await self._run(self._ops.bulk(Action.CANCEL, expected, everything, filters))

    async def retry_matching(
        self, *, expected: int, everything: bool = False, **filters: Unpack[Filters]
    ) -> int:
        return await self._run(self._ops.bulk(Action.RETRY, expected, everything, filters))

    async def delete_matching(
        self, *, expected: int, everything: bool = False, **filters: Unpack[Filters]
    ) -> int:
        return await self._run(self._ops.bulk(Action.DELETE, expected, everything, filters))

    async def pause(self, queue: str) -> bool:
        return await self._run(set_paused(check_queue_name(queue), True))

    async def resume(self, queue: str) -> bool:
        return await self._run(set_paused(check_queue_name(queue), False))

    async def queues(self) -> list[QueueInfo]:
        return await self._run(queues(self._ops.known_queues()))

    async def workers(self) -> list[WorkerInfo]:
        return await self._run(workers())

    async def schedules(self) -> list[ScheduleInfo]:
        return await self._run(schedules(list(self._app.schedules.values())))

    async def batch(self, batch_id: str, *, owner: str | None = None) -> BatchStatus:
        return await self._run(batch(batch_id, owner))

    async def batches(self, *, owner: str | None = None) -> list[BatchStatus]:
        return await self._run(self._ops.batches(owner))

    async def counts(
        self, *, since: float, until: float | None = None, queue: str | None = None,
        task: str | None = None,
    ) -> list[MinuteStats]:  # fmt: skip
        return await self._run(counts(since, until, queue, task))

    async def activity(self, *, span: str = "hour", queue: str | None = None) -> Activity:
        return await self._run(activity(span, queue))

    async def related(self, job_id: str, *, owner: str | None = None) -> Related:
        return await self._run(related(job_id, owner))

    async def totals(self) -> list[Total]:
        """Running totals per queue and task since counting began (for counters)."""
        return await self._run(totals())

    async def requests(self, *, since: float, until: float | None = None,
                       app: str | None = None) -> list[RequestStats]:  # fmt: skip
        return await self._run(request_stats(since, until, app))

    async def request_totals(self) -> list[RequestTotal]:
        """Running totals per app timed by ``offload.requests`` (for counters)."""
        return await self._run(request_totals())

    async def files(self, job_id: str, *, owner: str | None = None) -> list[FileInfo]:
        """The files a job's task attached (``JobNotFound`` if not ``owner``'s)."""
        await self.get(job_id, owner=owner)
        return await asyncio.to_thread(self._app.files.of_job, job_id)

    async def open_file(
        self, job_id: str, name: str, *, owner: str | None = None
    ) -> tuple[BinaryIO, FileInfo]:
        """One of a job's files, open for reading (``LookupError`` if it has none such)."""
        await self.get(job_id, owner=owner)
        return await asyncio.to_thread(self._app.files.open, job_id, name)

    async def link_secret(self) -> str:
        """The key signed links are signed with (``$OFFLOAD_SECRET_KEY`` or the store's)."""
        given = os.environ.get("OFFLOAD_SECRET_KEY")
        if given:
            return given
        made: str = await self._run(link_secret())
        return made

    async def recall_idempotent(self, owner: str | None, key: str) -> str | None:
        """The job id a request with this idempotency key made first (kept a day)."""
        return await self._run(recall(owner, key))

    async def remember_idempotent(self, owner: str | None, key: str, job_id: str) -> str:
        """Remember the job a keyed request made; returns the id remembered first."""
        return await self._run(remember(owner, key, job_id))

    def subscribe(
        self,
        *,
        job: str | None = None,
        owner: str | None = None,
        batch: str | None = None,
        queue: str | None = None,
    ) -> Subscription:
        """Live events (current state first) for a job, an owner, a batch or a queue."""
        return Subscription(self._app.backend, job=job, owner=owner, batch=batch, queue=queue)


def _action(action: Action | str | None) -> Action | None:
    if action is None:
        return None
    try:
        return Action(action)
    except ValueError:
        from offload.errors import InvalidQuery

        names = ", ".join(a.value for a in Action)
        raise InvalidQuery(f"unknown action {action!r}: use one of {names}") from None
