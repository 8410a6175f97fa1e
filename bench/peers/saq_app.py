"""The benchmark's SAQ settings: a no-op task taking an int and a 10 ms one, for both benchmarks.

Documented setup: ``Queue.from_url($BENCH_SAQ_URL)``, a ``PostgresQueue`` for
``postgresql://...`` and a ``RedisQueue`` for ``redis://...``, a settings dict,
workers run as ``python -m saq peers.saq_app.settings`` (SAQ logs at WARNING
unless given ``-v``). Defaults otherwise: JSON, job ttl 600 s
(finished jobs, with their result, are kept that long; SAQ has no separate
switch for result storage), 10 s timeout, 1 attempt. ``sleepy`` (the mixed
workload) awaits ``asyncio.sleep(0.01)`` and then records its end.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import jobsink
from saq import Queue


async def noop(ctx: dict[str, Any], *, i: int) -> None:
    jobsink.record(i)


async def sleepy(ctx: dict[str, Any], *, i: int) -> None:
    await asyncio.sleep(0.01)
    jobsink.record(i)


settings = {
    "queue": Queue.from_url(os.environ["BENCH_SAQ_URL"]),
    "functions": [noop, sleepy],
    "concurrency": int(os.environ.get("BENCH_CONCURRENCY", "50")),
}
