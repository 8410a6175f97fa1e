"""Redis answers a filter from whichever index is narrowest (index sizes, a time range, the
states' indexes, a batch, every job of a queue): whichever way, ``count`` must agree with
the pages ``query`` lists. Small bounds here send the same filters down every path."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from offload.backends import redis_query
from offload.backends.base import (
    ClaimParams,
    CountParams,
    EnqueueParams,
    FinishParams,
    JobFilter,
    Outcome,
    OutcomeKind,
    QueryParams,
)
from offload.backends.redis import RedisBackend, redis_backend
from offload.ids import IdGenerator
from offload.records import NewJob
from offload.states import JobState
from test_redis_lifetimes import START, Clock

new_id = IdGenerator()


async def _all_pages(backend: RedisBackend, f: JobFilter) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = await backend.query(QueryParams(filter=f, cursor=cursor, limit=7))
        ids += [j.id for j in page.jobs]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


async def _store(backend: RedisBackend, clock: Clock) -> None:
    for n in range(60):
        clock.now = START + n
        job = NewJob(
            id=new_id(), task=f"t{n % 3}", queue=f"q{n % 2}", payload=b'{"n": %d}' % n,
            owner=f"o{n % 4}", batch="b" if n % 5 == 0 else None,
        )  # fmt: skip
        await backend.enqueue(EnqueueParams(jobs=[job]))
    for queue in ("q0", "q1"):
        claim = ClaimParams(queues=[queue], limit=10, worker="w", lease_s=60)
        done = await backend.claim(claim)
        outcomes = [Outcome(id=j.id, delivery=j.delivery, kind=OutcomeKind.SUCCEEDED)
                    for j in done[:5]]  # fmt: skip
        await backend.finish(FinishParams(outcomes=outcomes))


FILTERS = [
    JobFilter(**dict(parts))  # type: ignore[arg-type]
    for parts in itertools.product(
        [(), (("states", [JobState.RUNNING, JobState.SUCCEEDED]),)],
        [(), (("owner", "o1"),), (("task", "t2"),)],
        [(), (("created_after", START + 10),), (("created_before", START + 45),)],
        [(), (("text", '"N": 1'),), (("batch", "b"),), (("queue", "q1"),)],
    )
    for parts in [tuple(itertools.chain(*parts))]
]


@pytest.mark.parametrize("bounds", [(10_000, 10_000), (5, 8)], ids=["wide", "narrow"])
def test_count_agrees_with_the_pages_of_every_filter(
    redis_url: str, bounds: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_query, "RANGE_MAX", bounds[0])
    monkeypatch.setattr(redis_query, "TEXT_SCAN", bounds[1])
    monkeypatch.setattr(redis_query, "QUERY_SCAN", 4)  # several scripts per walk
    clock = Clock()

    async def main() -> None:
        backend = redis_backend(redis_url, clock=clock)
        try:
            await _store(backend, clock)
            counts = []
            for f in FILTERS:
                listed = await _all_pages(backend, f)
                assert len(set(listed)) == len(listed), f
                assert listed == sorted(listed, reverse=True), f
                assert await backend.count(CountParams(filter=f)) == len(listed), f
                counts.append(len(listed))
            assert len(set(counts)) > 10, counts  # the filters do tell jobs apart
        finally:
            await backend.close()

    asyncio.run(main())
