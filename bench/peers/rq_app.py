"""The benchmark's RQ jobs: a no-op function taking an int, and a 10 ms one.

Documented setup: ``Queue(connection=Redis.from_url(...))`` and
``queue.enqueue(noop_def, i)``; workers run as ``rq worker --url ...
--logging_level WARNING --results-ttl 0``, 2 of them. RQ's default ``Worker``
forks a new "work horse" process for every job, which bounds its rate (and
makes each job open its own side-Redis connection); the benchmark says so
beside its figures. Defaults otherwise: pickle, 180 s job timeout;
``--results-ttl 0`` because RQ stores results by default (500 s) and the
benchmark keeps no results where that is optional. RQ runs functions, so
these ``def``s run in both kinds.
"""

from __future__ import annotations

import jobsink


def noop_def(i: int) -> None:
    jobsink.noop_def(i)


def sleepy_def(i: int) -> None:
    jobsink.sleepy_def(i)
