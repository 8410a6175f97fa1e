"""The benchmark's offload application: a no-op and a 10 ms task, as ``def`` and ``async def``.

The bodies are ``jobsink``'s (a record and one ``INCR`` on the side Redis).
offload runs ``def`` tasks on threads of its worker and ``async def`` ones on
its event loop, with ``-c`` jobs at once either way. The store is
``$OFFLOAD_URL`` (offload's own convention); workers run as ``python -m
offload worker offload_app:app -c C --log-level WARNING``.
"""

from __future__ import annotations

import jobsink

from offload import Offload

app = Offload()


@app.task
def noop_def(i: int) -> None:
    jobsink.noop_def(i)


@app.task
async def noop_async(i: int) -> None:
    await jobsink.noop_async(i)


@app.task
def sleepy_def(i: int) -> None:
    jobsink.sleepy_def(i)


@app.task
async def sleepy_async(i: int) -> None:
    await jobsink.sleepy_async(i)
