"""The benchmark's Celery application: a no-op task taking an int, and a 10 ms one, on Redis.

Documented setup: ``Celery(broker="redis://...")``, workers run as
``celery -A peers.celery_app worker --loglevel=WARNING --concurrency=2``: one
worker whose default prefork pool has 2 child processes (Celery's default on
this 2-core machine) that run the jobs, while the parent fetches and
acknowledges them. Defaults otherwise: JSON, no result backend (so nothing is
stored), early acknowledgement, prefetch multiplier 4. Celery tasks are plain
functions (it has no ``async def`` tasks), so the tasks are ``def``s; ``sleepy``
(the mixed workload) calls ``time.sleep(0.01)`` and then records its end.
"""

from __future__ import annotations

import os
import time

import jobsink
from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])


@app.task(name="noop")
def noop(i: int) -> None:
    jobsink.record(i)


@app.task(name="sleepy")
def sleepy(i: int) -> None:
    time.sleep(0.01)
    jobsink.record(i)
