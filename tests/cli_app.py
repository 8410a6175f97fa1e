"""A small offload app for tests/test_cli.py, imported by the ``offload`` command.

``Offload()`` takes its URL from ``$OFFLOAD_URL`` (or ``--url``), so every test
points it at its own SQLite file.
"""

from __future__ import annotations

import os
import time

from offload import Offload

app = Offload()

#: An attribute that is not an Offload app, for the loader's error message.
not_an_app = {"this is": "a dict"}


@app.task
def add(a: int, b: int, *, scale: int = 1) -> int:
    return (a + b) * scale


@app.task(retries=1, backoff=0)
def explode(message: str) -> None:
    """Always fails: two attempts in all, no wait between them, then dead."""
    raise RuntimeError(f"boom: {message}")


@app.task
def nap(seconds: float) -> str:
    time.sleep(seconds)
    return f"slept {seconds}"


@app.task
def hold(gate: str) -> str:
    """Sleeps until the file ``gate`` exists, so a test decides when the job ends."""
    deadline = time.monotonic() + 60
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        time.sleep(0.02)
    return "released"
