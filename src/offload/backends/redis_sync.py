"""The blocking Redis client, and what it shares with the asyncio one."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from offload.backends.base import (
    BatchQueryParams,
    Capabilities,
    CountParams,
    CountsParams,
    CountsQuery,
    EnqueueParams,
    IdsParams,
    MarkNamesParams,
    MarkParams,
    Page,
    PublishParams,
    PurgeParams,
    QueryParams,
    QueueStats,
)
from offload.backends.redis_admin import plan_delete, plan_publish, plan_workers
from offload.backends.redis_config import RedisConfig, client_options
from offload.backends.redis_counts import plan_batches, plan_read_counts, plan_record_counts
from offload.backends.redis_errors import TRANSIENT, translate, unreachable
from offload.backends.redis_keys import LAYOUT_VERSION, Keyspace
from offload.backends.redis_plans import (
    Command,
    Plan,
    Raw,
    Script,
    Scripts,
    plan_enqueue,
    plan_get_marks,
    plan_now,
    plan_preflight,
    plan_purge,
    plan_records,
    plan_set_mark,
    plan_stats,
)
from offload.backends.redis_query import plan_count, plan_query
from offload.records import BatchRecord, JobRecord, MinuteCounts, WorkerInfo

T = TypeVar("T")


class Runner:
    """What both clients share: the scripts, the keyspace and the clock argument."""

    def __init__(
        self, config: RedisConfig, scripts: Scripts, clock: Callable[[], float] | None
    ) -> None:
        self.config = config
        self.keys = Keyspace(config.prefix)
        self._scripts = scripts
        self._clock = clock

    def _command(self, command: Command) -> tuple[Any, ...]:
        if isinstance(command, Raw):
            return tuple(command.args)
        now = "" if self._clock is None else repr(self._clock())
        sha = self._scripts.sha[command.name]
        return ("EVALSHA", sha, 0, self.config.prefix, now, *command.args)


def call(client: redis.Redis, args: tuple[Any, ...]) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


async def acall(client: redis.asyncio.Redis, args: tuple[Any, ...]) -> Any:
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


class RedisSync(Runner):
    """The blocking client: Flask, Django, scripts and the CLI never build an event loop."""

    capabilities = Capabilities(push_wakeups=True, shared_between_processes=True)

    def __init__(
        self, config: RedisConfig, scripts: Scripts, clock: Callable[[], float] | None
    ) -> None:
        super().__init__(config, scripts, clock)
        self._client: redis.Redis | None = None
        self._opening = threading.Lock()

    def _get_client(self) -> redis.Redis:
        if self._client is not None:
            return self._client
        with self._opening:  # threads racing to connect would each leak a client
            if self._client is None:
                client = redis.Redis.from_url(
                    self.config.url, retry=Retry(NoBackoff(), 0),
                    **client_options(self.config, blocking=False),
                )  # fmt: skip
                try:
                    self._drive(client, plan_preflight(self.keys))
                except TRANSIENT as exc:
                    client.close()
                    raise unreachable(exc) from exc
                except BaseException:
                    client.close()
                    raise
                self._client = client
        return self._client

    def _drive(self, client: redis.Redis, plan: Plan[T]) -> T:
        try:
            command = next(plan)
            while True:
                try:
                    reply = call(client, self._command(command))
                except redis.exceptions.NoScriptError:  # a restarted server forgot the scripts
                    assert isinstance(command, Script)
                    call(client, ("SCRIPT", "LOAD", self._scripts.source[command.name]))
                    reply = call(client, self._command(command))
                command = plan.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def run(self, plan: Plan[T]) -> T:
        try:
            return self._drive(self._get_client(), plan)
        except Exception as exc:
            translated = translate(exc)
            if translated is exc:
                raise
            raise translated from exc

    def enqueue(self, params: EnqueueParams) -> list[JobRecord]:
        return self.run(plan_enqueue(params))

    def get(self, params: IdsParams) -> list[JobRecord]:
        return self.run(plan_records("get", params.ids))

    def query(self, params: QueryParams) -> Page:
        return self.run(plan_query(self.keys, params))

    def cancel(self, params: IdsParams) -> list[JobRecord]:
        return self.run(plan_records("cancel", params.ids))

    def retry(self, params: IdsParams) -> list[JobRecord]:
        return self.run(plan_records("retry", params.ids))

    def stats(self) -> list[QueueStats]:
        return self.run(plan_stats())

    def purge(self, params: PurgeParams) -> int:
        return self.run(plan_purge(params))

    def count(self, params: CountParams) -> int:
        return self.run(plan_count(self.keys, params))

    def delete(self, params: IdsParams) -> list[str]:
        return self.run(plan_delete(params))

    def publish(self, params: PublishParams) -> None:
        self.run(plan_publish(self.keys, params))

    def workers(self) -> list[WorkerInfo]:
        return self.run(plan_workers())

    def batches(self, params: BatchQueryParams) -> list[BatchRecord]:
        return self.run(plan_batches(params))

    def record_counts(self, params: CountsParams) -> None:
        self.run(plan_record_counts(params))

    def read_counts(self, params: CountsQuery) -> list[MinuteCounts]:
        return self.run(plan_read_counts(params))

    def get_marks(self, params: MarkNamesParams) -> dict[str, str]:
        return self.run(plan_get_marks(params))

    def set_mark(self, params: MarkParams) -> bool:
        return self.run(plan_set_mark(params))

    def now(self) -> float:
        return self._clock() if self._clock is not None else self.run(plan_now())

    def migrate(self) -> int:
        self._get_client()  # the preflight writes the layout version
        return LAYOUT_VERSION

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
