"""The events benchmark's application: one no-op job that records when it started.

It uses only what every offload version has, so the same file runs the code before
and after a change (``events_bench.py --before REF``).
"""

from __future__ import annotations

import jobsink

from offload import Offload

app = Offload()


@app.task(queue="bench")
async def noop(i: int) -> None:
    jobsink.record(i)
