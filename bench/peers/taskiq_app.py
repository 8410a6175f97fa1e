"""The benchmark's TaskIQ broker: a no-op task taking an int, and a 10 ms one, on Redis streams.

Documented setup (taskiq-redis's README): ``RedisStreamBroker(url=...)``, the
broker it recommends, with acknowledgements; ``await broker.startup()`` in the
client, then ``await noop.kiq(i)``. Workers run as ``taskiq worker
peers.taskiq_app:broker --workers 2 --max-async-tasks C --log-level WARNING``:
one command whose 2 worker processes run the jobs. Defaults otherwise: JSON,
no result backend (nothing is stored). ``sleepy`` (the mixed workload) awaits
``asyncio.sleep(0.01)`` and then records its end.
"""

from __future__ import annotations

import asyncio
import os

import jobsink
from taskiq_redis import RedisStreamBroker

broker = RedisStreamBroker(url=os.environ["BENCH_REDIS_URL"])


@broker.task(task_name="noop")
async def noop(i: int) -> None:
    jobsink.record(i)


@broker.task(task_name="sleepy")
async def sleepy(i: int) -> None:
    await asyncio.sleep(0.01)
    jobsink.record(i)
