"""Each Redis operation written once as a *plan*, a generator of commands that a
blocking or an asyncio runner drives (see redis.py)."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

from offload.backends.base import (
    ClaimParams,
    DuplicateJob,
    EnqueueParams,
    FinishParams,
    FinishResult,
    HeartbeatParams,
    HeartbeatResult,
    LockParams,
    MarkNamesParams,
    MarkParams,
    ProgressParams,
    PruneParams,
    PurgeParams,
    QueueStats,
    ReapedJob,
    ReapParams,
    StoreRefused,
    ValueRejected,
)
from offload.backends.redis_codec import (
    MAX_DURATION_S,
    encode,
    enqueue_args,
    error_json,
    escaped,
    job_args,
    json_arg,
    num,
    opt,
    record,
    records,
    span,
    text,
    when,
)
from offload.backends.redis_keys import LAYOUT_VERSION, LUA_KEYS, Keyspace
from offload.records import ENQUEUE_COUNTS_TTL_S, MAX_ATTEMPTS_KEPT, WORKER_LOST, JobRecord
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
_SCRIPTS = (
    "enqueue", "claim", "heartbeat", "finish", "progress", "get", "cancel", "retry",
    "stats", "promote", "reap", "prune", "purge", "query", "lock", "unlock", "peek",
    "set_mark", "unclaim", "get_marks", "prune_turns", "prune_rest", "index_batches",
    "index_created", "index_owners", "delete", "beat_worker", "remove_worker", "workers", "batches",
    "record_counts", "read_counts", "prune_batches", "prune_counts",
)  # fmt: skip
#: The scripts that store new jobs or end jobs: endings.lua comes after their prelude.
ENDING_SCRIPTS = frozenset({"enqueue", "finish", "reap", "cancel", "retry", "delete"})


class Scripts:
    """The Lua resources, each prefixed with the shared key layout and helpers."""

    def __init__(self) -> None:
        folder = resources.files("offload.backends") / "redis_lua"
        prelude = (folder / "prelude.lua").read_text()
        endings = (folder / "endings.lua").read_text()
        constants = (
            f"local MAX_ATTEMPTS = {MAX_ATTEMPTS_KEPT}\n"
            f"local ENQUEUE_COUNTS_TTL = {ENQUEUE_COUNTS_TTL_S!r}\n"
        )
        self.source: dict[str, str] = {}
        self.sha: dict[str, str] = {}
        for name in _SCRIPTS:
            script = (folder / f"{name}.lua").read_text()
            if name in ENDING_SCRIPTS:
                script = endings + script
            text = "local P = ARGV[1]\n" + LUA_KEYS + constants + prelude + script
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
    if stored is not None and int(stored) < LAYOUT_VERSION:
        yield from _upgrade(ks, int(stored))
    return None


def _upgrade(ks: Keyspace, layout: int) -> Plan[None]:
    """Index what older layouts did not, queue by queue, in short scripts: the batches'
    jobs (layout 1 to 2), the jobs' creation times (to 3), owners and tasks (to 5); layout
    4 only adds keys. Repeating one is harmless."""
    scripts = (["index_batches"] if layout < 2 else []) + (["index_created"] if layout < 3 else [])
    scripts += ["index_owners"] if layout < 5 else []
    for queue in (yield Raw(("SMEMBERS", ks.queues))):
        for script in scripts:
            after = ""
            while True:
                after = (yield Script(script, [queue, after, DELETE_BATCH])).decode()
                if not after:
                    break
    yield Raw(("SET", ks.version, str(LAYOUT_VERSION)))
    log.info("upgraded the Redis keyspace under prefix %r to layout %d", ks.prefix, LAYOUT_VERSION)


def _info_field(info: Any, name: str) -> str | None:
    if isinstance(info, dict):  # redis-py parses INFO into a dict
        value = info.get(name)
        return None if value is None else str(value)
    for line in bytes(info).decode().splitlines():
        if line.startswith(name + ":"):
            return line.partition(":")[2].strip()
    return None


def plan_enqueue(params: EnqueueParams) -> Plan[list[JobRecord]]:
    jobs = list(params.jobs)
    if not jobs:
        return []
    if len({j.id for j in jobs}) != len(jobs):
        raise DuplicateJob()
    reply = yield Script("enqueue", enqueue_args(jobs, params.batch))
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


def plan_records(script: str, ids: Sequence[str]) -> Plan[list[JobRecord]]:
    if not ids:
        return []
    return records((yield Script(script, [text(i, i, "id") for i in ids])))


#: What a claim that ran its queues dry says about them: (now, the next scheduled due time
#: or None).
IdleHint = tuple[float, float | None]
_IDLE_FIELDS = 3  # a record has len(FIELDS)


def plan_claim(params: ClaimParams) -> Plan[list[JobRecord]]:
    return (yield from plan_claim_with_hint(params))[0]


def claim_args(params: ClaimParams, token: str = "") -> list[Any]:
    """The claim script's arguments; ``token`` names a claim pipelined behind a wait, so
    that one abandoned midway can be handed back (see unclaim.lua)."""
    worker = text(params.worker, "", "the worker name")
    queues = [text(q, "", "a queue name") for q in params.queues]
    return [worker, span(params.lease_s, "", "lease_s"), params.limit, token, *queues]


def plan_claim_with_hint(
    params: ClaimParams, token: str = ""
) -> Plan[tuple[list[JobRecord], IdleHint | None]]:
    if params.limit <= 0 or not params.queues:
        return [], None
    reply = yield Script("claim", claim_args(params, token))
    hint: IdleHint | None = None
    if reply and len(reply[-1]) == _IDLE_FIELDS:
        _, now, next_at = reply.pop()
        hint = (float(now), float(next_at) if next_at else None)
    jobs = records(reply)
    jobs.sort(key=lambda j: (-j.priority, j.run_at, j.id))
    return jobs, hint


def plan_unclaim(token: str) -> Plan[int]:
    return int((yield Script("unclaim", [token])))


def plan_heartbeat(params: HeartbeatParams) -> Plan[HeartbeatResult]:
    if not params.leases:
        return HeartbeatResult(lost=[])
    args: list[Any] = [num(params.lease_s)]
    for lease in params.leases:
        args += (text(lease.id, lease.id, "id"), lease.delivery)
    lost = yield Script("heartbeat", args)
    return HeartbeatResult(lost=[i.decode() for i in lost])


def plan_finish(params: FinishParams) -> Plan[FinishResult]:
    if not params.outcomes:
        return FinishResult(rejected=[])
    args: list[Any] = []
    for o in params.outcomes:
        args += (
            text(o.id, o.id, "id"), o.delivery, o.kind.value,
            b"" if o.result is None else o.result,
            b"" if o.error is None else error_json(o.error),
            span(o.retry_delay_s, o.id, "retry_delay_s"),
            b"" if o.meta is None else b"m" + json_arg(o.meta, o.id, "meta"),
            len(o.follow_ups),
        )  # fmt: skip
        for new in o.follow_ups:
            args += job_args(new)
    rejected = yield Script("finish", args)
    return FinishResult(rejected=[i.decode() for i in rejected])


def plan_progress(params: ProgressParams) -> Plan[None]:
    if not params.updates:
        return None
    args: list[Any] = []
    for u in params.updates:
        if not math.isfinite(u.progress):  # skipped, as on every store: one update is lost
            continue
        message = None if u.message is None else escaped(u.message)
        args += (text(u.id, u.id, "id"), u.delivery, num(u.progress), opt(message))
    if args:
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
    lost = [encode(WORKER_LOST), WORKER_LOST.message]
    reply = yield Script("reap", [params.max_crashes, *lost])
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


def plan_prune(ks: Keyspace, params: PruneParams) -> Plan[int]:
    states = [JobState(s).value for s in params.states if JobState(s).is_terminal]
    before = when(params.finished_before, "", "finished_before")
    when(params.counts_before, "", "counts_before")
    deleted = (yield from plan_delete_in_batches("prune", [before, *states])) if states else 0
    # Completed batches go with their jobs; counts of old minutes, and the minutes whose
    # hash expired, leave the index (hashes expire on their own).
    yield from plan_delete_in_batches("prune_batches", [before])
    oldest = "" if params.counts_before is None else str(int(params.counts_before // 60))
    yield from plan_delete_in_batches("prune_counts", [oldest])
    # What outlives jobs, not counted with them: old fair turns, empty queues, marks.
    for queue in (yield Raw(("SMEMBERS", ks.queues))):
        cursor = b"0"
        while True:
            cursor = yield Script("prune_turns", [queue, cursor, before])
            if cursor == b"0":
                break
    yield Script("prune_rest", [])
    return deleted


def plan_purge(params: PurgeParams) -> Plan[int]:
    states = [JobState(s).value for s in params.states]
    if not states:
        return 0
    return (yield from plan_delete_in_batches("purge", [params.queue or "", *states]))


def plan_lock(params: LockParams) -> Plan[bool]:
    name, owner = text(params.name, "", "lock name"), text(params.owner, "", "lock owner")
    return bool((yield Script("lock", [name, owner, span(params.ttl_s, "", "ttl_s")])))


def plan_unlock(params: LockParams) -> Plan[None]:
    name, owner = text(params.name, "", "lock name"), text(params.owner, "", "lock owner")
    yield Script("unlock", [name, owner])
    return None


def plan_get_marks(params: MarkNamesParams) -> Plan[dict[str, str]]:
    names = list(params.names)
    if not names:
        return {}
    values = yield Script("get_marks", [text(n, "", "mark name") for n in names])
    return {n: v.decode() for n, v in zip(names, values, strict=True) if v is not None}


def plan_set_mark(params: MarkParams) -> Plan[bool]:
    if params.ttl_s is not None and not (0 < params.ttl_s <= MAX_DURATION_S):
        raise ValueRejected(f"mark {params.name!r}: ttl_s is {params.ttl_s!r}, not a lifetime")
    name = text(params.name, "", "mark name")
    args = [name, text(params.value, "", "mark value"), opt(params.expected, "", "mark value")]
    return bool((yield Script("set_mark", [*args, num(params.ttl_s)])))


def plan_peek(queues: Sequence[str]) -> Plan[tuple[float, bool, float | None]]:
    now, ready, next_at = yield Script("peek", list(queues))
    return float(now), bool(ready), float(next_at) if next_at else None


def plan_now() -> Plan[float]:
    seconds, micros = yield Raw(("TIME",))
    return int(seconds) + int(micros) / 1_000_000


def plan_promote() -> Plan[int]:
    return int((yield Script("promote", [])))
