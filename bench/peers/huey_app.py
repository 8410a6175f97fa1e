"""The benchmark's Huey instances: a no-op task taking an int, and a 10 ms one.

``huey`` is the Redis benchmark's (``RedisHuey(name, url=$BENCH_REDIS_URL)``),
``sqlite_huey`` the SQLite one's (``SqliteHuey(name, filename=...)``: WAL,
SQLite's own ``synchronous``, FULL here as offload's default, since
``fsync=None`` leaves it as compiled; polling with Huey's back-off, 0.1 s,
x1.15 per empty poll, at most 10 s). Documented setup: ``@huey.task()``;
workers run as ``huey_consumer peers.huey_app.<instance> --workers C
--worker-type thread --quiet``, 2 consumers. Defaults otherwise: pickle;
``results=False`` since the benchmark stores no results where that is optional.
Huey runs ``def`` tasks on its worker threads and has no ``async def`` ones, so
these run in both kinds.
"""

from __future__ import annotations

import os
from typing import Any

import jobsink
from huey import Huey, RedisHuey, SqliteHuey


def tasks(huey: Huey) -> dict[str, Any]:
    """The tasks by name, each enqueued by calling it."""
    return {
        name: huey.task(name=name)(getattr(jobsink, name)) for name in ("noop_def", "sleepy_def")
    }


if "BENCH_HUEY_SQLITE_PATH" in os.environ:
    sqlite_huey = SqliteHuey("bench", filename=os.environ["BENCH_HUEY_SQLITE_PATH"], results=False)
    sqlite_tasks = tasks(sqlite_huey)
if "BENCH_REDIS_URL" in os.environ:
    huey = RedisHuey("bench", url=os.environ["BENCH_REDIS_URL"], results=False)
    redis_tasks = tasks(huey)
