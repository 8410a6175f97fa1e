"""Redis: every state transition is one Lua script, called by SHA.

The scripts live in ``redis_lua/`` and the key names in ``redis_keys``. Each
operation is written once as a *plan* (``redis_plans``), a generator of Redis
commands, driven by a blocking client (``redis_sync``: Flask, Django, scripts) or an
asyncio client (``redis_wait``: the worker, FastAPI), as for PostgreSQL. Leases are
scored by the server's ``TIME``, so workers on machines with skewed clocks agree. Idle
workers block in ``BLPOP`` on a per-queue wake-up list rather than polling. Each script
publishes its step's events on the prefix's pub/sub channels (``redis_events``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from offload.backends.base import (
    ALL_EVENTS,
    BatchQueryParams,
    Capabilities,
    ClaimParams,
    CountParams,
    CountsParams,
    CountsQuery,
    EnqueueParams,
    EventStream,
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
    SubscribeParams,
    WorkerBeatParams,
)
from offload.backends.redis_admin import (
    plan_beat_worker,
    plan_delete,
    plan_publish,
    plan_remove_worker,
    plan_workers,
)
from offload.backends.redis_config import RedisConfig, parse_redis_url
from offload.backends.redis_counts import plan_batches, plan_read_counts, plan_record_counts
from offload.backends.redis_events import RedisEventStream
from offload.backends.redis_keys import LAYOUT_VERSION
from offload.backends.redis_plans import (
    Scripts,
    plan_claim_with_hint,
    plan_enqueue,
    plan_finish,
    plan_get_marks,
    plan_heartbeat,
    plan_lock,
    plan_now,
    plan_progress,
    plan_promote,
    plan_prune,
    plan_purge,
    plan_reap,
    plan_records,
    plan_set_mark,
    plan_stats,
    plan_unlock,
)
from offload.backends.redis_query import plan_count, plan_query
from offload.backends.redis_sync import RedisSync
from offload.backends.redis_wait import UNCLAIM_TRY_S, AsyncRunner
from offload.records import CONTROL_KINDS, BatchRecord, JobRecord, MinuteCounts, WorkerInfo


class RedisBackend(AsyncRunner):
    capabilities = Capabilities(
        push_wakeups=True, shared_between_processes=True, abandonable_claims=True
    )

    @property
    def blocking(self) -> RedisSync:
        return self._sync

    async def enqueue(self, params: EnqueueParams) -> list[JobRecord]:
        return await self.run(plan_enqueue(params))

    async def claim(self, params: ClaimParams) -> list[JobRecord]:
        """A token names the claim, as one behind a wait: one whose reply never comes (a
        lost connection, a cancelled call) is handed back, no attempt or crash charged."""
        if self._abandoned:
            await self._hand_back(UNCLAIM_TRY_S)
        token = uuid.uuid4().hex
        try:
            jobs, hint = await self.run(plan_claim_with_hint(params, token))
        except BaseException as exc:
            await self._abandon(token, exc)
            raise
        self._idle_hint = None if hint is None else (tuple(params.queues), hint)
        return jobs

    async def heartbeat(self, params: HeartbeatParams) -> HeartbeatResult:
        return await self.run(plan_heartbeat(params))

    async def finish(self, params: FinishParams) -> FinishResult:
        return await self.run(plan_finish(params))

    async def report_progress(self, params: ProgressParams) -> None:
        await self.run(plan_progress(params))

    async def cancel(self, params: IdsParams) -> list[JobRecord]:
        return await self.run(plan_records("cancel", params.ids))

    async def retry(self, params: IdsParams) -> list[JobRecord]:
        return await self.run(plan_records("retry", params.ids))

    async def get(self, params: IdsParams) -> list[JobRecord]:
        return await self.run(plan_records("get", params.ids))

    async def query(self, params: QueryParams) -> Page:
        return await self.run(plan_query(self.keys, params))

    async def stats(self) -> list[QueueStats]:
        return await self.run(plan_stats())

    async def promote_due(self) -> int:
        return await self.run(plan_promote())

    async def reap_expired(self, params: ReapParams) -> list[ReapedJob]:
        return await self.run(plan_reap(params))

    async def prune(self, params: PruneParams) -> int:
        return await self.run(plan_prune(self.keys, params))

    async def purge(self, params: PurgeParams) -> int:
        return await self.run(plan_purge(params))

    async def count(self, params: CountParams) -> int:
        return await self.run(plan_count(self.keys, params))

    async def delete(self, params: IdsParams) -> list[str]:
        return await self.run(plan_delete(params))

    def subscribe(self, params: SubscribeParams = ALL_EVENTS) -> EventStream:
        """Control kinds alone (a worker's subscription) come from their own channel, which
        the scripts always send on: the full channel's events are built only while heard."""
        control = bool(params.kinds) and params.kinds <= CONTROL_KINDS
        channel = self.keys.control if control else self.keys.events
        return RedisEventStream(self.config, channel, params.kinds)

    async def publish(self, params: PublishParams) -> None:
        await self.run(plan_publish(self.keys, params))

    async def beat_worker(self, params: WorkerBeatParams) -> None:
        await self.run(plan_beat_worker(params))

    async def remove_worker(self, params: IdsParams) -> None:
        await self.run(plan_remove_worker(params))

    async def workers(self) -> list[WorkerInfo]:
        return await self.run(plan_workers())

    async def batches(self, params: BatchQueryParams) -> list[BatchRecord]:
        return await self.run(plan_batches(params))

    async def record_counts(self, params: CountsParams) -> None:
        await self.run(plan_record_counts(params))

    async def read_counts(self, params: CountsQuery) -> list[MinuteCounts]:
        return await self.run(plan_read_counts(params))

    async def lock(self, params: LockParams) -> bool:
        return await self.run(plan_lock(params))

    async def unlock(self, params: LockParams) -> None:
        await self.run(plan_unlock(params))

    async def get_marks(self, params: MarkNamesParams) -> dict[str, str]:
        return await self.run(plan_get_marks(params))

    async def set_mark(self, params: MarkParams) -> bool:
        return await self.run(plan_set_mark(params))

    async def now(self) -> float:
        return self._clock() if self._clock is not None else await self.run(plan_now())

    async def migrate(self) -> int:
        await self._get_client()
        return LAYOUT_VERSION


def redis_backend(url: str, clock: Callable[[], float] | None = None) -> RedisBackend:
    return RedisBackend(parse_redis_url(url), clock=clock)


__all__ = [
    "RedisBackend",
    "RedisConfig",
    "RedisSync",
    "Scripts",
    "parse_redis_url",
    "redis_backend",
]
