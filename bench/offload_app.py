"""The benchmark's offload application: one no-op task taking an int.

The store is ``$OFFLOAD_URL`` (offload's own convention); workers run as
``python -m offload worker offload_app:app -c 50 --log-level WARNING``.
"""

from __future__ import annotations

import jobsink

from offload import Offload

app = Offload()


@app.task
async def noop(i: int) -> None:
    jobsink.record(i)
