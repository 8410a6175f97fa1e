"""The HTTP API tests' application: public tasks a client may start, and one it may not."""

from __future__ import annotations

import asyncio
import os
from typing import TypedDict

from offload import Offload, current_job

app = Offload(os.environ.get("OFFLOAD_URL", "sqlite:///offload.db"), default_retries=0)


class Size(TypedDict):
    width: int
    height: int


@app.task(public=True)
async def resize(name: str, sizes: list[Size], quality: int = 80) -> dict[str, object]:
    """A job that takes a while, reports progress, and returns a result."""
    for i, _ in enumerate(sizes):
        await asyncio.sleep(0.05)
        current_job().set_progress((i + 1) / len(sizes), f"size {i + 1}")
    return {"name": name, "made": len(sizes), "quality": quality}


@app.task(public=True)
async def wait_s(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@app.task(public=True)
def fail(message: str) -> None:
    raise RuntimeError(message)


@app.task
def internal(secret: str) -> None:
    """Never startable over HTTP: not public."""


@app.task(public=True)
def collect(outcomes: list[dict[str, object]], label: str) -> dict[str, object]:
    """A batch's callback: its members' outcomes come first."""
    return {"label": label, "states": sorted(str(o["state"]) for o in outcomes)}


@app.periodic("0 3 * * *", tz="Europe/Paris")
def nightly_cleanup() -> None:
    """A schedule for the schedules route (it runs at 03:00, never during a test)."""


@app.task(public=True)
def make_report(title: str, pages: int) -> str:
    """Attaches two files: one from bytes, one copied from a path."""
    import tempfile

    job = current_job()
    job.attach(f"{title}\n".encode() * pages, name="report.txt")
    with tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False) as out:
        out.write(b"page,words\n" + b"".join(f"{i},100\n".encode() for i in range(pages)))
    job.attach(out.name, name="pages.csv")
    os.unlink(out.name)
    return "report.txt"


@app.task(public=True, secret=("api_key",), secret_result=True)
def call_api(url: str, api_key: str) -> str:
    """Its key and its result never show: the API, the CLI and notices read [redacted]."""
    return f"session-for-{api_key}"
