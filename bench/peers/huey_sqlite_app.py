"""The SQLite benchmark's Huey instance: a no-op task and a 10 ms one, both taking an int.

Documented setup: ``SqliteHuey(name, filename=...)`` and ``@huey.task()``;
workers run as ``huey_consumer peers.huey_sqlite_app.huey --workers C
--worker-type thread --quiet``, 2 consumers (see ``sqlite_bench.py``). Defaults
otherwise: pickle, WAL journal, SQLite's own ``synchronous`` (``fsync=None``
leaves it as compiled, FULL here, as offload's default), polling with Huey's
back-off (0.1 s, x1.15 per empty poll, at most 10 s); ``results=False`` since
the benchmark stores no results where that is optional (Huey would store none
for a task returning ``None`` anyway). Huey runs ``def`` tasks on its worker
threads; ``sleepy`` (the mixed workload) calls ``time.sleep(0.01)`` and then
records its end.
"""

from __future__ import annotations

import os
import time

import jobsink
from huey import SqliteHuey

huey = SqliteHuey("bench", filename=os.environ["BENCH_HUEY_SQLITE_PATH"], results=False)


@huey.task()
def noop(i: int) -> None:
    jobsink.record(i)


@huey.task()
def sleepy(i: int) -> None:
    """The mixed workload's job: 10 ms of waiting (I/O, say), which threads can overlap."""
    time.sleep(0.01)
    jobsink.record(i)
