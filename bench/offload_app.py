"""The benchmark's offload application: a no-op task taking an int, and a 10 ms one.

``noop`` records that it ran first thing; ``sleepy`` (the mixed workload)
awaits ``asyncio.sleep(0.01)`` and then records, so its record marks its end.

The store is ``$OFFLOAD_URL`` (offload's own convention); workers run as
``python -m offload worker offload_app:app -c 50 --log-level WARNING``.
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
    await asyncio.sleep(0.01)
    jobsink.record(i)
