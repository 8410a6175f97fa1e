"""The benchmark's Dramatiq actors: a no-op taking an int, and a 10 ms one, on Redis.

Documented setup: ``RedisBroker(url=...)`` set as the global broker and an
``@dramatiq.actor``; workers run as ``dramatiq peers.dramatiq_app --processes 2
--threads C --skip-logging``: one command whose 2 worker processes run the
jobs on C threads each. Defaults otherwise: JSON, the default middleware (no
results middleware, so nothing is stored), 10 min time limit, retries.
``--skip-logging`` leaves logging unconfigured, so only warnings reach stderr
(Dramatiq has no log-level option; without it it logs at INFO). Dramatiq's
``async def`` actors need an extra middleware, so the actors are ``def``s,
run in both kinds.
"""

from __future__ import annotations

import os

import dramatiq
import jobsink
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"])
dramatiq.set_broker(broker)


@dramatiq.actor
def noop_def(i: int) -> None:
    jobsink.noop_def(i)


@dramatiq.actor
def sleepy_def(i: int) -> None:
    jobsink.sleepy_def(i)
