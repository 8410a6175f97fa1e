"""The benchmark's arq worker settings: a no-op and a 10 ms task, each as ``def`` and ``async def``.

Documented setup: ``create_pool(RedisSettings.from_dsn(...))`` and
``pool.enqueue_job("noop_async", i)``; a ``WorkerSettings`` class with
``max_jobs = C`` and ``keep_result = 0`` (arq keeps results for an hour by
default; the benchmark stores none where that is optional). arq runs only
coroutines; for blocking code its docs say to run it in an executor, so the
``def`` bodies run in a ``ThreadPoolExecutor`` of C threads made at start-up
(``loop.run_in_executor``). Workers run as ``python -m peers.arq_app``, 2 of
them: arq's documented ``run_worker(WorkerSettings)`` after setting logging to
WARNING (the ``arq`` command always configures INFO, two lines per job).
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import jobsink
from arq import run_worker
from arq.connections import RedisSettings

CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "50"))


async def startup(ctx: dict[str, Any]) -> None:
    ctx["pool"] = ThreadPoolExecutor(CONCURRENCY)


async def noop_def(ctx: dict[str, Any], i: int) -> None:
    await asyncio.get_running_loop().run_in_executor(ctx["pool"], jobsink.noop_def, i)


async def noop_async(ctx: dict[str, Any], i: int) -> None:
    await jobsink.noop_async(i)


async def sleepy_def(ctx: dict[str, Any], i: int) -> None:
    await asyncio.get_running_loop().run_in_executor(ctx["pool"], jobsink.sleepy_def, i)


async def sleepy_async(ctx: dict[str, Any], i: int) -> None:
    await jobsink.sleepy_async(i)


class WorkerSettings:
    functions: ClassVar[list[Any]] = [noop_def, noop_async, sleepy_def, sleepy_async]
    on_startup = startup
    redis_settings = RedisSettings.from_dsn(os.environ["BENCH_REDIS_URL"])
    max_jobs = CONCURRENCY
    keep_result = 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    run_worker(WorkerSettings)  # type: ignore[arg-type]
