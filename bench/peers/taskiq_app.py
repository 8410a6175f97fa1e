"""The benchmark's TaskIQ broker (Redis streams): a no-op and a 10 ms task, ``def`` and ``async``.

Documented setup (taskiq-redis's README): ``RedisStreamBroker(url=...)``, the
broker it recommends, with acknowledgements; ``await broker.startup()`` in the
client, then ``await noop_async.kiq(i)``. Workers run as ``taskiq worker
peers.taskiq_app:broker --workers 2 --max-async-tasks C --log-level WARNING``
(the ``def`` kind adds ``--max-threadpool-threads C``: TaskIQ runs ``def``
tasks in a thread pool): one command whose 2 worker processes run the jobs.
Defaults otherwise: JSON, no result backend (nothing is stored).
"""

from __future__ import annotations

import os

import jobsink
from taskiq_redis import RedisStreamBroker

broker = RedisStreamBroker(url=os.environ["BENCH_REDIS_URL"])


@broker.task(task_name="noop_def")
def noop_def(i: int) -> None:
    jobsink.noop_def(i)


@broker.task(task_name="noop_async")
async def noop_async(i: int) -> None:
    await jobsink.noop_async(i)


@broker.task(task_name="sleepy_def")
def sleepy_def(i: int) -> None:
    jobsink.sleepy_def(i)


@broker.task(task_name="sleepy_async")
async def sleepy_async(i: int) -> None:
    await jobsink.sleepy_async(i)
