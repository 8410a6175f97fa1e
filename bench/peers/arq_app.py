"""The benchmark's arq worker settings: a no-op coroutine taking an int, and a 10 ms one.

Documented setup: ``create_pool(RedisSettings.from_dsn(...))`` and
``pool.enqueue_job("noop", i)``; a ``WorkerSettings`` class with
``max_jobs = C`` and ``keep_result = 0`` (arq keeps results for an hour by
default; the benchmark stores none where that is optional). Workers run as
``python -m peers.arq_app``, 2 of them, which is arq's documented
``run_worker(WorkerSettings)`` after setting logging to WARNING: the ``arq``
command always configures INFO, which logs two lines per job. ``sleepy`` (the
mixed workload) awaits ``asyncio.sleep(0.01)`` and then records its end.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, ClassVar

import jobsink
from arq import run_worker
from arq.connections import RedisSettings


async def noop(ctx: dict[str, Any], i: int) -> None:
    jobsink.record(i)


async def sleepy(ctx: dict[str, Any], i: int) -> None:
    await asyncio.sleep(0.01)
    jobsink.record(i)


class WorkerSettings:
    functions: ClassVar[list[Any]] = [noop, sleepy]
    redis_settings = RedisSettings.from_dsn(os.environ["BENCH_REDIS_URL"])
    max_jobs = int(os.environ.get("BENCH_CONCURRENCY", "50"))
    keep_result = 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    run_worker(WorkerSettings)  # type: ignore[arg-type]
