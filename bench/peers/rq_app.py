"""The benchmark's RQ jobs: a no-op function taking an int, and a 10 ms one.

Documented setup: ``Queue(connection=Redis.from_url(...))`` and
``queue.enqueue(noop, i)``; workers run as ``rq worker --url ...
--logging_level WARNING --results-ttl 0``, 2 of them. RQ's default ``Worker``
forks a new "work horse" process for every job, which bounds its rate; the
benchmark says so beside its figures. Defaults otherwise: pickle, 180 s job
timeout; ``--results-ttl 0`` because RQ stores results by default (500 s) and
the benchmark keeps no results where that is optional. ``sleepy`` (the mixed
workload) calls ``time.sleep(0.01)`` and then records its end.
"""

from __future__ import annotations

import time

import jobsink


def noop(i: int) -> None:
    jobsink.record(i)


def sleepy(i: int) -> None:
    time.sleep(0.01)
    jobsink.record(i)
