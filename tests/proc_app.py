"""An importable app for the process-pool tests (children import it by name)."""

from __future__ import annotations

import os
import time

from offload import Offload, current_job

app = Offload(default_retries=0)


@app.task(timeout_s=1.0)
def sleepy(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


@app.task
def square(n: int) -> int:
    current_job().set_progress(0.5, "halfway")
    return n * n


@app.task(retries=1, backoff=0)
def die() -> None:
    os._exit(3)


@app.task
async def async_square(n: int) -> int:
    return n * n


@app.task
def forever() -> None:
    time.sleep(3600)


@app.task
def attach_note(text: str) -> None:
    current_job().attach(text.encode(), name="note.txt")
