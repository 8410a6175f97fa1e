"""SAQ's settings for both benchmarks: a no-op and a 10 ms task, as ``def`` and ``async def``.

Documented setup: ``Queue.from_url($BENCH_SAQ_URL)``, a ``PostgresQueue`` for
``postgresql://...`` and a ``RedisQueue`` for ``redis://...``, a settings dict,
workers run as ``python -m saq peers.saq_app.settings`` (SAQ logs at WARNING
unless given ``-v``). SAQ runs ``def`` functions in its worker's thread pool
and coroutines on its loop, ``concurrency`` at once. Defaults otherwise: JSON,
job ttl 600 s (finished jobs, with their result, are kept that long; SAQ has
no separate switch for result storage), 10 s timeout, 1 attempt.
"""

from __future__ import annotations

import os
from typing import Any

import jobsink
from saq import Queue


def noop_def(ctx: dict[str, Any], *, i: int) -> None:
    jobsink.noop_def(i)


async def noop_async(ctx: dict[str, Any], *, i: int) -> None:
    await jobsink.noop_async(i)


def sleepy_def(ctx: dict[str, Any], *, i: int) -> None:
    jobsink.sleepy_def(i)


async def sleepy_async(ctx: dict[str, Any], *, i: int) -> None:
    await jobsink.sleepy_async(i)


settings = {
    "queue": Queue.from_url(os.environ["BENCH_SAQ_URL"]),
    "functions": [noop_def, noop_async, sleepy_def, sleepy_async],
    "concurrency": int(os.environ.get("BENCH_CONCURRENCY", "50")),
}
