"""The SQLite benchmark's offload application: a no-op task and a 10 ms one, both taking an int.

The store is ``$OFFLOAD_URL`` (offload's own convention; the benchmark sets it
to ``sqlite:////<temp folder>/offload.db``, default settings); workers run as
``python -m offload worker offload_sqlite_app:app -c 50 --log-level WARNING``.
``sleepy`` (the mixed workload) awaits ``asyncio.sleep(0.01)`` and then
records, so its record marks its end (as ``bench/offload_app.py``'s does).
"""

from __future__ import annotations

import asyncio

import jobsink

from offload import Offload

app = Offload()


@app.task
async def noop(i: int) -> None:
    jobsink.record(i)


@app.task
async def sleepy(i: int) -> None:
    """The mixed workload's job: 10 ms of waiting (I/O, say), which slots can overlap."""
    await asyncio.sleep(0.01)
    jobsink.record(i)
