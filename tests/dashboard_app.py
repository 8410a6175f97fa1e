"""The dashboard tests' application: a job that fails until it is allowed to succeed, a
slow one to cancel, a task whose very name is HTML, and one with a secret argument."""

from __future__ import annotations

import os
import time
from pathlib import Path

from offload import Offload, current_job

#: The task that names itself in HTML, to check that pages show it as text.
HTML_TASK = '<img src=x onerror="window.pwned=1">'


def build_app(url: str) -> Offload:
    app = Offload(url, default_retries=0)
    #: Where ``flaky`` looks for its permission to succeed (set by the test).
    allow_dir = Path(os.environ.get("DASHBOARD_ALLOW_DIR", "."))

    @app.task
    def flaky(label: str) -> str:
        """Fails until ``<label>.ok`` exists in ``allow_dir``: a job a person retries once the
        cause is fixed."""
        job = current_job()
        job.set_progress(0.5, "checking")
        if not (allow_dir / f"{label}.ok").exists():
            raise RuntimeError(f"{label}: the upstream service refused the request")
        job.attach(f"report for {label}\n".encode(), name="report.txt")
        return f"done {label}"

    @app.task(queue="slow")
    def sleepy(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @app.task(name=HTML_TASK)
    def html_named(note: str) -> str:
        return note

    @app.task(secret=("api_key",))
    def call_api(url: str, api_key: str) -> str:
        return url

    return app


app = build_app(os.environ.get("OFFLOAD_URL", "sqlite:///offload.db"))
