"""``offload demo``: a sample application on the embedded default, watched live.

It enqueues a few thousand jobs of several kinds (documents with progress,
thumbnails, e-mails, a flaky partner API that needs retries, delayed reports,
a few poison inputs), starts worker processes, shows their progress and prints
the outcome. It uses only the public API.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from offload import Abort, Offload, Signature, current_job

DEMO_URL = "sqlite:///offload-demo.db"

app = Offload(os.environ.get("OFFLOAD_URL") or DEMO_URL, default_retries=3)


@app.task(queue="default", timeout_s=30)
def convert_document(name: str, pages: int) -> dict[str, object]:
    if pages <= 0:
        raise Abort(f"{name}: a document needs at least one page, got {pages}")
    job = current_job()
    for page in range(1, pages + 1):
        time.sleep(0.001)
        job.set_progress(page / pages, f"page {page} of {pages}")
    return {"pdf": name.rsplit(".", 1)[0] + ".pdf", "pages": pages}


@app.task
async def make_thumbnail(image_id: int, size: int = 128) -> str:
    await asyncio.sleep(random.uniform(0.001, 0.005))
    return f"thumbs/{image_id}_{size}.webp"


@app.task(priority=5)
async def send_email(to: str, subject: str) -> None:
    await asyncio.sleep(0.002)


@app.task(retries=4, backoff=0.2)
async def call_partner_api(order_id: int) -> int:
    await asyncio.sleep(0.003)
    if random.random() < 0.25:
        raise ConnectionError(f"partner API timed out for order {order_id}")
    return order_id * 2


@app.task
def nightly_report(day: str) -> str:
    return f"report for {day}: ok"


def enqueue_sample(job_count: int) -> int:
    rng = random.Random(7)
    signatures: list[Signature[Any]] = []
    for n in range(job_count):
        kind = n % 10
        if kind < 3:
            pages = -1 if n % 500 == 0 else rng.randint(1, 8)
            signatures.append(convert_document.s(f"upload-{n}.docx", pages))
        elif kind < 6:
            signatures.append(make_thumbnail.s(n))
        elif kind < 8:
            signatures.append(send_email.s(f"user{n}@example.com", "Your files are ready"))
        elif kind < 9:
            signatures.append(call_partner_api.s(n))
        else:
            signatures.append(
                nightly_report.options(delay=rng.uniform(0.5, 2.0)).s(f"2026-11-{n % 28 + 1:02d}")
            )
    for start in range(0, len(signatures), 500):
        convert_document.enqueue_many(signatures[start : start + 500])
    return len(signatures)


def _table(counts: dict[str, int], total: int, elapsed_s: float) -> Table:
    done = counts["succeeded"] + counts["dead"] + counts["cancelled"]
    table = Table(title=f"offload demo: {done}/{total} jobs ended in {elapsed_s:.1f}s")
    for state in ("scheduled", "queued", "running", "succeeded", "dead"):
        table.add_column(state, justify="right")
    table.add_column("jobs/s", justify="right")
    table.add_row(
        *(str(counts[s]) for s in ("scheduled", "queued", "running", "succeeded", "dead")),
        f"{done / elapsed_s:.0f}" if elapsed_s > 0 else "-",
    )
    return table


def _counts() -> dict[str, int]:
    totals = {s: 0 for s in ("scheduled", "queued", "running", "succeeded", "dead", "cancelled")}
    for row in app.admin.queues():
        for state, count in row.counts.items():
            totals[state] += count
    return totals


def run_demo(job_count: int = 3000, worker_count: int = 2, url: str | None = None) -> None:
    console = Console()
    if url:
        app.use_url(url)
    if app.url == DEMO_URL:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists("offload-demo.db" + suffix):
                os.remove("offload-demo.db" + suffix)
    console.print(f"[bold]offload demo[/] on {app.url}: enqueueing {job_count} jobs")
    enqueued = enqueue_sample(job_count)
    started = time.monotonic()
    command = [sys.executable, "-m", "offload", "worker", "offload.demo:app", "-c", "16",
               "--url", app.url, "--log-level", "WARNING"]  # fmt: skip
    workers = [subprocess.Popen(command) for _ in range(worker_count)]
    try:
        with Live(console=console, refresh_per_second=8) as live:
            while True:
                counts = _counts()
                live.update(_table(counts, enqueued, time.monotonic() - started))
                if counts["scheduled"] + counts["queued"] + counts["running"] == 0:
                    break
                if any(w.poll() is not None for w in workers):
                    raise SystemExit("a demo worker exited early; see its messages above")
                time.sleep(0.25)
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=60)
    elapsed_s = time.monotonic() - started
    counts = _counts()
    console.print(
        f"{counts['succeeded']} succeeded, {counts['dead']} dead (poison inputs, on purpose) "
        f"in {elapsed_s:.1f}s with {worker_count} worker processes: "
        f"{enqueued / elapsed_s:.0f} jobs/s"
    )
    dead = app.admin.jobs(state="dead", limit=1)
    if dead.jobs and dead.jobs[0].error:
        console.print(f"a dead job's error: {dead.jobs[0].error.message}")
    retried = app.admin.jobs(task="call_partner_api", state="succeeded", limit=1000)
    console.print(
        f"{sum(1 for j in retried.jobs if j.attempt > 1)} partner-API calls succeeded after a retry"
    )
    console.print(f"inspect them: offload jobs --url {app.url} --state dead")
