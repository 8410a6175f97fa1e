"""The benchmark's Huey instance: a no-op task taking an int, and a 10 ms one, on Redis.

Documented setup: ``RedisHuey(name, url=...)`` and ``@huey.task()``; workers
run as ``huey_consumer peers.huey_app.huey --workers C --worker-type thread
--quiet``, 2 consumers. Defaults otherwise: pickle, blocking dequeue
(``BRPOP``); ``results=False`` since the benchmark stores no results where that
is optional (Huey would store none for a task returning ``None`` anyway).
Huey runs ``def`` tasks on its worker threads; ``sleepy`` (the mixed workload)
calls ``time.sleep(0.01)`` and then records its end.
"""

from __future__ import annotations

import os
import time

import jobsink
from huey import RedisHuey

huey = RedisHuey("bench", url=os.environ["BENCH_REDIS_URL"], results=False)


@huey.task()
def noop(i: int) -> None:
    jobsink.record(i)


@huey.task()
def sleepy(i: int) -> None:
    time.sleep(0.01)
    jobsink.record(i)
