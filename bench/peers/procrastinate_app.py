"""The benchmark's procrastinate app: a no-op and a 10 ms task, as ``def`` and ``async def``.

Documented setup: ``App(connector=PsycopgConnector(conninfo=...))``, the schema
applied once, workers run as ``python -m procrastinate
--app=peers.procrastinate_app.app --log-level=warning worker --concurrency=C``.
procrastinate runs ``def`` tasks in threads (asgiref's ``sync_to_async``) and
``async def`` ones on its loop, ``--concurrency`` at once. Defaults otherwise:
JSON arguments, no results (procrastinate never stores them), finished jobs
kept (``delete_jobs=never``).
"""

from __future__ import annotations

import os

import jobsink
import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ["BENCH_PROCRASTINATE_URL"])
)


@app.task(name="noop_def")
def noop_def(i: int) -> None:
    jobsink.noop_def(i)


@app.task(name="noop_async")
async def noop_async(i: int) -> None:
    await jobsink.noop_async(i)


@app.task(name="sleepy_def")
def sleepy_def(i: int) -> None:
    jobsink.sleepy_def(i)


@app.task(name="sleepy_async")
async def sleepy_async(i: int) -> None:
    await jobsink.sleepy_async(i)
