"""The benchmark's procrastinate application: a no-op task taking an int, and a 10 ms one.

Documented setup: ``App(connector=PsycopgConnector(conninfo=...))``, the schema
applied once, workers run as
``python -m procrastinate --app=peers.procrastinate_app.app --log-level=warning
worker --concurrency=50``. Defaults otherwise: JSON arguments, no results
(procrastinate never stores them), finished jobs kept (``delete_jobs=never``).
``sleepy`` (the mixed workload) awaits ``asyncio.sleep(0.01)`` and then records
its end.
"""

from __future__ import annotations

import asyncio
import os

import jobsink
import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ["BENCH_PROCRASTINATE_URL"])
)


@app.task(name="noop")
async def noop(i: int) -> None:
    jobsink.record(i)


@app.task(name="sleepy")
async def sleepy(i: int) -> None:
    await asyncio.sleep(0.01)
    jobsink.record(i)
