"""The benchmark's Celery application: a no-op task taking an int, and a 10 ms one, on Redis.

Documented setup: ``Celery(broker="redis://...")``, workers run as
``celery -A peers.celery_app worker --loglevel=WARNING --concurrency=2``: one
worker whose default prefork pool has 2 child processes (Celery's default on
this 2-core machine) that run the jobs, while the parent fetches and
acknowledges them. Defaults otherwise: JSON, no result backend (so nothing is
stored), early acknowledgement, prefetch multiplier 4. Celery has no ``async
def`` tasks, so there are ``def`` tasks only, run in both kinds.
"""

from __future__ import annotations

import os

import jobsink
from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])


@app.task(name="noop_def")
def noop_def(i: int) -> None:
    jobsink.noop_def(i)


@app.task(name="sleepy_def")
def sleepy_def(i: int) -> None:
    jobsink.sleepy_def(i)
