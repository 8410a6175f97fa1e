"""An app for notice tests run in worker processes (short leases: a killed worker's
notice comes back within seconds)."""

from __future__ import annotations

import os

from offload import Offload

app = Offload(
    os.environ.get("OFFLOAD_URL", "sqlite:///notices.db"),
    default_retries=0,
    lease_s=2.0,
)


@app.task
def convert(name: str) -> str:
    return name.upper()
