"""The feature benchmark's application: the same no-op job, with and without each feature.

Each variant has a queue of its own, so that a worker serves one variant at a time:
``plain`` (no feature), ``fair`` (a fair queue, jobs spread over 10 owners),
``limited`` (a concurrency and a rate limit that never bind: their bookkeeping only,
keyed over 100 keys) and ``batched`` (micro-batches of up to 100 items).
"""

from __future__ import annotations

import jobsink

from offload import ConcurrencyLimit, Offload, RateLimit

app = Offload(fair_queues=["fair"])


@app.task(queue="plain")
async def plain(i: int) -> None:
    jobsink.record(i)


@app.task(queue="fair")
async def fair(i: int) -> None:
    jobsink.record(i)


def _key(i: int) -> int:
    return i % 100


@app.task(
    queue="limited",
    limits=[ConcurrencyLimit(1_000_000, key=_key), RateLimit("1000000/s", key=_key, burst=1000)],
)
async def limited(i: int) -> None:
    jobsink.record(i)


@app.task(queue="batched", batch_size=100, batch_wait_s=0.05)
async def batched(items: list[int]) -> list[None]:
    for i in items:
        jobsink.record(i)
    return [None] * len(items)
