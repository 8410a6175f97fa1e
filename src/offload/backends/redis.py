"""Redis: every state transition is one Lua script, called by SHA.

The scripts live in ``redis_lua/`` and the key names in ``redis_keys``. Each
operation is written once as a *plan*, a generator of Redis commands, driven by
a blocking client (Flask, Django, scripts) or an asyncio client (the worker,
FastAPI), as for PostgreSQL. Leases are scored by the server's ``TIME``, so
workers on machines with skewed clocks agree. Idle workers block in ``BLPOP``
on a per-queue wake-up list rather than polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import redis
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from offload.backends.base import (
    BackendError,
    Capabilities,
    ClaimParams,
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
    PurgeParams,
    QueryParams,
    QueueStats,
    ReapedJob,
    ReapParams,
    StoreRefused,
    WaitParams,
)
from offload.backends.redis_keys import LAYOUT_VERSION, LUA_KEYS, Keyspace
from offload.records import FAIR_STEP_S, WORKER_LOST, ErrorInfo, JobRecord
from offload.states import JobState

log = logging.getLogger("offload.redis")

T = TypeVar("T")

#: Per-state indexes, in the order stats.lua reports their sizes.
STATE_ORDER = (
    JobState.SCHEDULED, JobState.QUEUED, JobState.RUNNING,
    JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED,
)  # fmt: skip
#: How many jobs one prune or purge script deletes before handing the server back.
DELETE_BATCH = 5000
#: How many ids one listing script looks at before handing the server back.
QUERY_SCAN = 2000
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0
_SCRIPTS = (
    "enqueue", "claim", "heartbeat", "finish", "progress", "get", "cancel", "retry",
    "stats", "promote", "reap", "prune", "purge", "query", "lock", "unlock", "peek",
    "set_mark",
)  # fmt: skip
_OPTIONS = {"prefix", "pool_max"}
#: What redis-py reads from a URL's query string (connection and TLS settings).
_REDIS_PY_OPTIONS = {
    "db", "health_check_interval", "protocol", "socket_keepalive", "socket_read_size",
    "ssl_check_hostname", "ssl_min_version", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path",
    "ssl_ca_data", "ssl_certfile", "ssl_keyfile", "ssl_password", "ssl_ciphers", "client_name",
}  # fmt: skip
_encode = msgspec.json.encode
_decode_error = msgspec.json.Decoder(ErrorInfo).decode
_decode_meta = msgspec.json.Decoder(dict[str, Any]).decode
_TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


@dataclass(frozen=True)
class RedisConfig:
    url: str  # what redis-py gets: our options removed
    prefix: str = "offload"
    pool_max: int = 50


def parse_redis_url(url: str) -> RedisConfig:
    """Offload's options ride in the query string; redis-py's own go to it untouched."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _OPTIONS:
            ours[name] = value
        elif name in _REDIS_PY_OPTIONS:
            theirs.append((name, value))
        else:
            known = ", ".join(sorted(_OPTIONS | _REDIS_PY_OPTIONS))
            raise ValueError(f"unknown option {name!r} in the Redis URL; known options: {known}")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError(
            f"the Redis URL's database must be a number, as in redis://host:6379/0, "
            f"got {database!r}"
        )
    prefix = Keyspace(ours.get("prefix", "offload")).prefix
    try:
        pool_max = int(ours.get("pool_max", "50"))
    except ValueError:
        pool_max = 0
    if pool_max < 2:
        raise ValueError(
            f"URL option pool_max must be an integer of at least 2, got {ours['pool_max']!r}"
        )
    clean = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(theirs), ""))
    return RedisConfig(url=clean, prefix=prefix, pool_max=pool_max)


class Scripts:
    """The Lua resources, each prefixed with the shared key layout and helpers."""

    def __init__(self) -> None:
        folder = resources.files("offload.backends") / "redis_lua"
        prelude = (folder / "prelude.lua").read_text()
        self.source: dict[str, str] = {}
        self.sha: dict[str, str] = {}
        for name in _SCRIPTS:
            text = "local P = ARGV[1]\n" + LUA_KEYS + prelude + (folder / f"{name}.lua").read_text()
            self.source[name] = text
            self.sha[name] = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


# -- commands and plans: each operation written once ----------------------------


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    args: Sequence[Any]


@dataclass(frozen=True, slots=True)
class Raw:
    args: Sequence[Any]


Command = Script | Raw
Plan = Generator[Command, Any, T]


def _s(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _f(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def _opt(value: str | None) -> str:
    """Optional strings: '' is None, anything else travels behind an 's'."""
    return "" if value is None else "s" + value


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def record(v: Sequence[Any]) -> JobRecord:
    """A job hash, read with HMGET in prelude.lua's FIELDS order."""
    return JobRecord(
        id=v[0].decode(), task=v[1].decode(), queue=v[2].decode(), state=JobState(v[3].decode()),
        payload=v[4], priority=int(v[5]), attempt=int(v[6]), max_attempts=int(v[7]),
        delivery=int(v[8]), crashes=int(v[9]), run_at=float(v[10]), lease_until=_f(v[11]),
        lease_s=_f(v[12]), timeout_s=_f(v[13]), worker=_s(v[14]), progress=float(v[15]),
        progress_message=_s(v[16]), result=v[17],
        error=None if v[18] is None else _decode_error(v[18]), created_at=float(v[19]),
        started_at=_f(v[20]), finished_at=_f(v[21]), key=_s(v[22]), batch=_s(v[23]),
        owner=_s(v[24]), meta={} if v[25] is None else _decode_meta(v[25]),
    )  # fmt: skip


def plan_preflight(ks: Keyspace) -> Plan[None]:
    """Refuse a server that may evict keys, or a newer keyspace layout than ours."""
    info = yield Raw(("INFO", "memory"))
    policy = _info_field(info, "maxmemory_policy")
    persistence = yield Raw(("INFO", "persistence"))
    if _info_field(persistence, "aof_enabled") == "0":
        log.info(  # seen in worker logs, kept out of one-shot CLI commands
            "Redis runs without the append-only file: a Redis crash loses the jobs written "
            "since its last snapshot. Set `appendonly yes` (and `appendfsync always` for no "
            "loss at all); see the README's Redis section"
        )
    if policy is not None and policy != "noeviction":
        raise StoreRefused(
            f"Redis maxmemory-policy is {policy!r}, so Redis may silently delete jobs when "
            "memory runs short; offload needs 'noeviction'. Fix: "
            "`redis-cli CONFIG SET maxmemory-policy noeviction`, and set "
            "`maxmemory-policy noeviction` in redis.conf so that it survives a restart"
        )
    yield Raw(("SET", ks.version, str(LAYOUT_VERSION), "NX"))
    stored = yield Raw(("GET", ks.version))
    if stored is not None and int(stored) > LAYOUT_VERSION:
        raise StoreRefused(
            f"the Redis keyspace under prefix {ks.prefix!r} has layout {int(stored)}, newer than "
            f"this offload's ({LAYOUT_VERSION}); upgrade offload"
        )
    return None


def _info_field(info: Any, name: str) -> str | None:
    if isinstance(info, dict):  # redis-py parses INFO into a dict
        value = info.get(name)
        return None if value is None else str(value)
    for line in bytes(info).decode().splitlines():
        if line.startswith(name + ":"):
            return line.partition(":")[2].strip()
    return None


_FAIR_STEP = _num(FAIR_STEP_S)


def _enqueue_args(params: EnqueueParams) -> list[Any]:
    args: list[Any] = [len(params.jobs)]
    for j in params.jobs:
        args += (
            j.id, j.task, j.queue, j.payload, j.priority, j.max_attempts, _num(j.delay_s),
            _num(j.run_at), _num(j.lease_s), _num(j.timeout_s), _opt(j.key), _opt(j.batch),
            _opt(j.owner), _encode(j.meta) if j.meta else "", _FAIR_STEP if j.fair else "",
        )  # fmt: skip
    return args


def plan_enqueue(params: EnqueueParams) -> Plan[list[JobRecord]]:
    jobs = list(params.jobs)
    if not jobs:
        return []
    if len({j.id for j in jobs}) != len(jobs):
        raise ValueError("a job id in this batch already exists; nothing was stored")
    reply = yield Script("enqueue", _enqueue_args(params))
    now = float(reply[0])
    out: list[JobRecord] = []
    for new, stored in zip(jobs, reply[1:], strict=True):
        if isinstance(stored, list):  # the live job that holds this unique key
            out.append(record(stored))
            continue
        if stored:  # a fair job's turn
            run_at = float(stored)
        else:
            run_at = new.run_at if new.run_at is not None else now + new.delay_s
        fresh = JobRecord(
            id=new.id, task=new.task, queue=new.queue,
            state=JobState.SCHEDULED if run_at > now else JobState.QUEUED,
            payload=new.payload, priority=new.priority, max_attempts=new.max_attempts,
            run_at=run_at, lease_s=new.lease_s, timeout_s=new.timeout_s, created_at=now,
            key=new.key, batch=new.batch, owner=new.owner, meta=dict(new.meta),
        )  # fmt: skip
        out.append(fresh)
    return out


def _records(reply: Any) -> list[JobRecord]:
    return [record(v) for v in reply]


def plan_records(script: str, ids: Sequence[str]) -> Plan[list[JobRecord]]:
    if not ids:
        return []
    return _records((yield Script(script, list(ids))))


#: What a claim that ran its queues dry says about them: (now, the next scheduled due time
#: or None).
IdleHint = tuple[float, float | None]
_IDLE_FIELDS = 3  # a record has len(FIELDS)


def plan_claim(params: ClaimParams) -> Plan[list[JobRecord]]:
    return (yield from plan_claim_with_hint(params))[0]


def plan_claim_with_hint(params: ClaimParams) -> Plan[tuple[list[JobRecord], IdleHint | None]]:
    if params.limit <= 0 or not params.queues:
        return [], None
    reply = yield Script(
        "claim", [params.worker, _num(params.lease_s), params.limit, *params.queues]
    )
    hint: IdleHint | None = None
    if reply and len(reply[-1]) == _IDLE_FIELDS:
        _, now, next_at = reply.pop()
        hint = (float(now), float(next_at) if next_at else None)
    jobs = _records(reply)
    jobs.sort(key=lambda j: (-j.priority, j.run_at, j.id))
    return jobs, hint


def plan_heartbeat(params: HeartbeatParams) -> Plan[HeartbeatResult]:
    if not params.leases:
        return HeartbeatResult(lost=[])
    args: list[Any] = [_num(params.lease_s)]
    for lease in params.leases:
        args += (lease.id, lease.delivery)
    lost = yield Script("heartbeat", args)
    return HeartbeatResult(lost=[i.decode() for i in lost])


def plan_finish(params: FinishParams) -> Plan[FinishResult]:
    if not params.outcomes:
        return FinishResult(rejected=[])
    args: list[Any] = []
    for o in params.outcomes:
        args += (
            o.id, o.delivery, o.kind.value, b"" if o.result is None else o.result,
            b"" if o.error is None else _encode(o.error), _num(o.retry_delay_s),
            b"" if o.meta is None else b"m" + _encode(o.meta),
        )  # fmt: skip
    rejected = yield Script("finish", args)
    return FinishResult(rejected=[i.decode() for i in rejected])


def plan_progress(params: ProgressParams) -> Plan[None]:
    if not params.updates:
        return None
    args: list[Any] = []
    for u in params.updates:
        args += (u.id, u.delivery, _num(u.progress), _opt(u.message))
    yield Script("progress", args)
    return None


def plan_stats() -> Plan[list[QueueStats]]:
    rows = yield Script("stats", [])
    return [
        QueueStats(
            queue=row[0].decode(),
            counts={state.value: int(n) for state, n in zip(STATE_ORDER, row[1:7], strict=True)},
            oldest_ready_age_s=float(row[7]) if row[7] else None,
            finished_last_minute=int(row[8]),
        )
        for row in rows
    ]


def plan_reap(params: ReapParams) -> Plan[list[ReapedJob]]:
    reply = yield Script("reap", [params.max_crashes, _encode(WORKER_LOST)])
    return [
        ReapedJob(id=reply[i].decode(), state=JobState(reply[i + 1].decode()))
        for i in range(0, len(reply), 2)
    ]


def plan_delete_in_batches(script: str, args: Sequence[Any]) -> Plan[int]:
    """Prune and purge run as several short scripts, so a big one never stalls Redis."""
    total = 0
    while True:
        deleted = int((yield Script(script, [*args[:1], DELETE_BATCH, *args[1:]])))
        total += deleted
        if deleted < DELETE_BATCH:
            return total


def plan_prune(params: PruneParams) -> Plan[int]:
    states = [JobState(s).value for s in params.states if JobState(s).is_terminal]
    if not states:
        return 0
    return (yield from plan_delete_in_batches("prune", [_num(params.finished_before), *states]))


def plan_purge(params: PurgeParams) -> Plan[int]:
    states = [JobState(s).value for s in params.states]
    if not states:
        return 0
    return (yield from plan_delete_in_batches("purge", [params.queue or "", *states]))


def plan_query(ks: Keyspace, params: QueryParams) -> Plan[Page]:
    f = params.filter
    want = params.limit + 1
    if f.queue is not None:
        queues = [f.queue]
    else:
        queues = sorted(q.decode() for q in (yield Raw(("SMEMBERS", ks.queues))))
    states = ",".join(JobState(s).value for s in f.states)
    found: list[JobRecord] = []
    for queue in queues:
        cursor, matches = params.cursor or "", 0
        while True:
            reply = yield Script(
                "query",
                [queue, cursor, want - matches, QUERY_SCAN, states,
                 _opt(f.task), _opt(f.owner), _opt(f.batch)],
            )  # fmt: skip
            page = _records(reply[1:])
            found += page
            matches += len(page)
            cursor = reply[0].decode()
            if matches >= want or not cursor:
                break
    found.sort(key=lambda j: j.id, reverse=True)
    jobs = found[: params.limit]
    more = len(found) > params.limit
    return Page(jobs=jobs, next_cursor=jobs[-1].id if more and jobs else None)


def plan_lock(params: LockParams) -> Plan[bool]:
    return bool((yield Script("lock", [params.name, params.owner, _num(params.ttl_s)])))


def plan_unlock(params: LockParams) -> Plan[None]:
    yield Script("unlock", [params.name, params.owner])
    return None


def plan_get_marks(ks: Keyspace, params: MarkNamesParams) -> Plan[dict[str, str]]:
    names = list(params.names)
    if not names:
        return {}
    values = yield Raw(("HMGET", ks.marks, *names))
    return {n: v.decode() for n, v in zip(names, values, strict=True) if v is not None}


def plan_set_mark(params: MarkParams) -> Plan[bool]:
    args = [params.name, params.value, _opt(params.expected)]
    return bool((yield Script("set_mark", args)))


def plan_peek(queues: Sequence[str]) -> Plan[tuple[float, bool, float | None]]:
    now, ready, next_at = yield Script("peek", list(queues))
    return float(now), bool(ready), float(next_at) if next_at else None


def plan_now() -> Plan[float]:
    seconds, micros = yield Raw(("TIME",))
    return int(seconds) + int(micros) / 1_000_000


def plan_promote() -> Plan[int]:
    return int((yield Script("promote", [])))


# -- runners -------------------------------------------------------------------


def _detail(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unreachable(exc: BaseException) -> BackendError:
    return BackendError(
        f"cannot connect to Redis ({_detail(exc)}); check the URL (--url or OFFLOAD_URL) "
        "and that the server is running"
    )


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, redis.exceptions.ResponseError):
        message = str(exc)
        if "OFFLOAD_DUPLICATE" in message:
            return ValueError(message.split("OFFLOAD_DUPLICATE", 1)[1].strip().split("\n")[0])
        if message.startswith("OOM"):
            return BackendError(
                "Redis is out of memory (maxmemory reached) and refused to store more; "
                "raise maxmemory or prune finished jobs sooner"
            )
        return BackendError(f"Redis refused the operation: {_detail(exc)}")
    if isinstance(exc, _TRANSIENT):
        return BackendError(f"Redis is unavailable: {_detail(exc)}")
    return exc


class _Runner:
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


def _call(client: redis.Redis, args: tuple[Any, ...]) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


async def _acall(client: redis.asyncio.Redis, args: tuple[Any, ...]) -> Any:
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def _client_options(config: RedisConfig, blocking: bool) -> dict[str, Any]:
    # No silent retries: a retried script whose first reply was lost would run twice.
    # Workers and callers retry at their own level, where that is safe.
    return {
        "decode_responses": False,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": None if blocking else COMMAND_TIMEOUT_S,
        "max_connections": config.pool_max,
    }


def _async_client(config: RedisConfig, blocking: bool = False) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(
        config.url, retry=AsyncRetry(NoBackoff(), 0), **_client_options(config, blocking)
    )


class RedisSync(_Runner):
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
                    **_client_options(self.config, blocking=False),
                )  # fmt: skip
                try:
                    self._drive(client, plan_preflight(self.keys))
                except _TRANSIENT as exc:
                    client.close()
                    raise _unreachable(exc) from exc
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
                    reply = _call(client, self._command(command))
                except redis.exceptions.NoScriptError:  # a restarted server forgot the scripts
                    assert isinstance(command, Script)
                    _call(client, ("SCRIPT", "LOAD", self._scripts.source[command.name]))
                    reply = _call(client, self._command(command))
                command = plan.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def run(self, plan: Plan[T]) -> T:
        try:
            return self._drive(self._get_client(), plan)
        except BackendError:
            raise
        except Exception as exc:
            raise _translate(exc) from exc

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

    def get_marks(self, params: MarkNamesParams) -> dict[str, str]:
        return self.run(plan_get_marks(self.keys, params))

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


class RedisBackend(_Runner):
    capabilities = Capabilities(push_wakeups=True, shared_between_processes=True)

    def __init__(self, config: RedisConfig, clock: Callable[[], float] | None = None) -> None:
        scripts = Scripts()
        super().__init__(config, scripts, clock)
        self._sync = RedisSync(config, scripts, clock)
        self._client: redis.asyncio.Redis | None = None
        self._waiter: redis.asyncio.Redis | None = None
        self._idle_hint: tuple[tuple[str, ...], IdleHint] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: tuple[asyncio.Lock, asyncio.AbstractEventLoop] | None = None
        self._outage = False

    @property
    def blocking(self) -> RedisSync:
        return self._sync

    async def _get_client(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        if self._opening is None or self._opening[1] is not loop:
            self._opening = (asyncio.Lock(), loop)
        async with self._opening[0]:  # a worker's first calls come at once: connect once
            if self._client is None or self._loop is not loop:
                client = _async_client(self.config)
                try:
                    await self._drive(client, plan_preflight(self.keys))
                except _TRANSIENT as exc:
                    await client.aclose()
                    raise _unreachable(exc) from exc
                except BaseException:
                    await client.aclose()
                    raise
                self._client, self._loop, self._waiter = client, loop, None
        return self._client

    async def _drive(self, client: redis.asyncio.Redis, plan: Plan[T]) -> T:
        try:
            command = next(plan)
            while True:
                try:
                    reply = await _acall(client, self._command(command))
                except redis.exceptions.NoScriptError:  # a restarted server forgot the scripts
                    assert isinstance(command, Script)
                    await _acall(client, ("SCRIPT", "LOAD", self._scripts.source[command.name]))
                    reply = await _acall(client, self._command(command))
                command = plan.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def run(self, plan: Plan[T]) -> T:
        try:
            result = await self._drive(await self._get_client(), plan)
        except BackendError as exc:
            self._note_outage(exc)
            raise
        except Exception as exc:
            self._note_outage(exc)
            raise _translate(exc) from exc
        if self._outage:
            self._outage = False
            log.warning("Redis is reachable again")
        return result

    def _note_outage(self, exc: BaseException) -> None:
        """Log an outage once, in the driver's words, however many calls fail during it."""
        cause = exc.__cause__ if isinstance(exc, BackendError) else exc
        if isinstance(cause, _TRANSIENT) and not self._outage:
            self._outage = True
            log.warning("Redis is unreachable (%s); retrying", _detail(cause))

    async def enqueue(self, params: EnqueueParams) -> list[JobRecord]:
        return await self.run(plan_enqueue(params))

    async def claim(self, params: ClaimParams) -> list[JobRecord]:
        jobs, hint = await self.run(plan_claim_with_hint(params))
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
        return await self.run(plan_prune(params))

    async def purge(self, params: PurgeParams) -> int:
        return await self.run(plan_purge(params))

    async def lock(self, params: LockParams) -> bool:
        return await self.run(plan_lock(params))

    async def unlock(self, params: LockParams) -> None:
        await self.run(plan_unlock(params))

    async def get_marks(self, params: MarkNamesParams) -> dict[str, str]:
        return await self.run(plan_get_marks(self.keys, params))

    async def set_mark(self, params: MarkParams) -> bool:
        return await self.run(plan_set_mark(params))

    async def now(self) -> float:
        return self._clock() if self._clock is not None else await self.run(plan_now())

    async def migrate(self) -> int:
        await self._get_client()
        return LAYOUT_VERSION

    # -- wake-ups --------------------------------------------------------------
    async def wait(self, params: WaitParams) -> list[JobRecord] | None:
        """Block in BLPOP on the queues' wake-up lists until a token, the next due job, or
        the timeout. Enqueues, retries and claims that leave work behind push the token.

        With ``params.claim`` the claim is pipelined behind the BLPOP on the same
        connection, so Redis runs it the moment the token arrives: waking up and taking
        the work cost one round trip, not two.
        """
        queues = list(params.queues)
        if not queues:
            await asyncio.sleep(max(params.timeout_s, 0.0))
            return None
        hint, self._idle_hint = self._idle_hint, None
        if hint is not None and hint[0] == tuple(queues):
            # The claim just before ran the queues dry and said when the next job falls due;
            # a job stored since then pushes a wake-up token, so the BLPOP below sees it.
            (now, next_at), ready = hint[1], False
        else:
            now, ready, next_at = await self.run(plan_peek(queues))
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # redis-py can finish a command whose task was cancelled meanwhile and drop the
            # cancellation: without this the worker's stop would wait for the BLPOP below.
            raise asyncio.CancelledError
        if ready:
            return None
        timeout_s = params.timeout_s
        if next_at is not None:
            timeout_s = min(timeout_s, next_at - now)
        if timeout_s < 0.001:
            return None
        waiter = await self._get_waiter()
        wake_keys = [self.keys.wake(q) for q in queues]
        try:
            if params.claim is None:
                await waiter.blpop(wake_keys, timeout=round(timeout_s, 3))
                return None
            return await self._wake_and_claim(waiter, wake_keys, timeout_s, params.claim)
        except BackendError:
            raise
        except Exception as exc:
            self._note_outage(exc)
            raise _translate(exc) from exc

    async def _wake_and_claim(
        self,
        waiter: redis.asyncio.Redis,
        wake_keys: list[str],
        timeout_s: float,
        claim: ClaimParams,
    ) -> list[JobRecord] | None:
        plan = plan_claim_with_hint(claim)
        try:
            command = next(plan)
        except StopIteration:  # nothing to claim into: just wait
            await waiter.blpop(wake_keys, timeout=round(timeout_s, 3))
            return None
        pipe = waiter.pipeline(transaction=False)
        pipe.blpop(wake_keys, timeout=round(timeout_s, 3))
        pipe.execute_command(*self._command(command))
        try:
            _, reply = await pipe.execute()
        except redis.exceptions.NoScriptError:  # a restarted server forgot the scripts
            jobs, hint = await self.run(plan_claim_with_hint(claim))
        else:
            try:
                plan.send(reply)
                raise AssertionError("a claim is one command")
            except StopIteration as done:
                jobs, hint = done.value
        self._idle_hint = None if hint is None else (tuple(claim.queues), hint)
        return jobs

    async def _get_waiter(self) -> redis.asyncio.Redis:
        await self._get_client()  # same loop, preflight done
        if self._waiter is None:
            self._waiter = _async_client(self.config, blocking=True)
        return self._waiter

    async def close(self) -> None:
        for client in (self._waiter, self._client):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._client = self._waiter = None
        await asyncio.to_thread(self._sync.close)


def redis_backend(url: str, clock: Callable[[], float] | None = None) -> RedisBackend:
    return RedisBackend(parse_redis_url(url), clock=clock)


__all__ = ["RedisBackend", "RedisSync", "parse_redis_url", "redis_backend"]
