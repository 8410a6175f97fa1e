"""The Redis keyspace: Python and the Lua scripts name keys alike, and stay in their lanes.

Every key must start with the prefix (ACL rules, co-tenants on one server) and
every key of a queue must carry the queue as its hash tag (Redis Cluster slots).
"""

from __future__ import annotations

import asyncio

import pytest
import redis

from offload.backends.base import (
    ClaimParams,
    CountsParams,
    EnqueueParams,
    FinishParams,
    IdsParams,
    LockParams,
    Outcome,
    OutcomeKind,
    ReapParams,
)
from offload.backends.redis import parse_redis_url, redis_backend
from offload.backends.redis_keys import LUA_KEYS, Keyspace, check_prefix
from offload.ids import IdGenerator
from offload.records import BatchOpen, MinuteCounts, NewJob

new_id = IdGenerator()


def test_python_and_lua_name_keys_alike(redis_url: str) -> None:
    config = parse_redis_url(redis_url)
    keys = Keyspace(config.prefix)
    script = (
        "local P = ARGV[1]\n" + LUA_KEYS + "return {DIR, UNIQUE, QUEUES, qkey('mail', 'wake'), "
        "jkey('mail', 'abc'), lockkey('leader'), turnskey('mail'), CONTROL_CHANNEL, "
        "batchrec('b-1'), countkey('28333333'), COUNT_MINUTES}"
    )
    client = redis.Redis.from_url(config.url)
    try:
        names = [n.decode() for n in client.eval(script, 0, config.prefix)]
    finally:
        client.close()
    assert names[0] == keys.directory
    assert names[2] == keys.queues
    assert names[3] == keys.wake("mail")
    assert names[4] == keys.job("mail", "abc")
    assert names[5] == keys.lock("leader")
    assert names[6] == keys.turns("mail")
    assert names[7:] == [keys.control, keys.batch_record("b-1"), keys.counts(28333333),
                         keys.count_minutes]  # fmt: skip
    assert names[1] == keys.directory.removesuffix("dir") + "keys"


def test_every_key_has_the_prefix_and_queue_keys_their_hash_tag(redis_url: str) -> None:
    config = parse_redis_url(redis_url)

    async def exercise() -> None:
        backend = redis_backend(redis_url)
        try:
            jobs = [
                NewJob(id=new_id(), task="t", queue=queue, payload=b"[]", key=f"k-{queue}")
                for queue in ("mail", "pdf", "pdf")
            ] + [NewJob(id=new_id(), task="t", queue="later", payload=b"[]", delay_s=60)]
            jobs.insert(0, NewJob(id=new_id(), task="t", queue="pdf", payload=b"[]", fair=True))
            await backend.enqueue(EnqueueParams(jobs=jobs))
            claimed = await backend.claim(
                ClaimParams(queues=["mail", "pdf"], limit=10, worker="w", lease_s=30)
            )
            outcomes = [
                Outcome(id=j.id, delivery=j.delivery, kind=OutcomeKind.SUCCEEDED, result=b"1")
                for j in claimed
            ]
            await backend.finish(FinishParams(outcomes=outcomes))
            await backend.cancel(IdsParams(ids=[jobs[-1].id]))
            await backend.reap_expired(ReapParams())
            await backend.lock(LockParams(name="leader", owner="w", ttl_s=5))
            member = NewJob(id=new_id(), task="t", queue="mail", payload=b"[]", batch="b")
            callback = NewJob(id=new_id(), task="t", queue="pdf", payload=b"[]")
            opened = BatchOpen(id="b", callback=callback)
            await backend.enqueue(EnqueueParams(jobs=[member], batch=opened))
            await backend.cancel(IdsParams(ids=[member.id]))
            row = MinuteCounts(minute=1, queue="mail", task="t", source="w")
            await backend.record_counts(CountsParams(rows=[row], ttl_s=60))
        finally:
            await backend.close()

    asyncio.run(exercise())
    client = redis.Redis.from_url(config.url)
    try:
        names = [k.decode() for k in client.scan_iter(match="*", count=1000)]
    finally:
        client.close()
    ours = [n for n in names if n.startswith(config.prefix + ":")]
    assert ours, "the backend wrote no keys under its prefix"
    assert len(ours) == len([n for n in names if config.prefix in n])  # nothing outside it
    for name in ours:
        lane = name.removeprefix(config.prefix + ":")
        if lane.startswith("q:"):
            tag = lane[2 : lane.index("}") + 1]
            assert tag in ("{mail}", "{pdf}", "{later}"), name
        else:
            assert lane.startswith("g:{" + config.prefix + "}:"), name


@pytest.mark.parametrize("prefix", ["", "a{b", "a}b", "with space", "star*", "x" * 65])
def test_bad_prefixes_are_refused_with_the_rule(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix must be 1 to 64 characters"):
        check_prefix(prefix)


def test_url_options_are_ours_and_the_rest_goes_to_redis_py() -> None:
    config = parse_redis_url("rediss://:pw@host:6380/2?prefix=app:jobs&ssl_cert_reqs=none")
    assert config.prefix == "app:jobs"
    assert config.url == "rediss://:pw@host:6380/2?ssl_cert_reqs=none"
    with pytest.raises(ValueError, match="pool_max"):
        parse_redis_url("redis://host/0?pool_max=lots")
