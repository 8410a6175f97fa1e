"""The app that tests/test_worker_threads.py and test_worker_isolation.py run in real worker
processes: each execution is logged (start and end, with pid and time) under $FAULT_LOG_DIR."""

from __future__ import annotations

import os
import time

from offload import Offload

# Short leases so a dead worker's jobs come back within seconds.
app = Offload(lease_s=2.0, max_crashes=3, default_retries=0)


def note(event: str, name: str) -> None:
    path = os.path.join(os.environ["FAULT_LOG_DIR"], f"{os.getpid()}.log")
    with open(path, "a") as log:
        log.write(f"{event} {name} {os.getpid()} {time.time():.6f}\n")


@app.task
def long_sleeper(seconds: float) -> str:
    """A ``def`` task that outlives any grace period and cannot be stopped."""
    note("start", "long_sleeper")
    time.sleep(seconds)
    note("end", "long_sleeper")
    return "slept"


@app.task
def innocent(n: int) -> int:
    """Never misbehaves; runs long enough to be in flight when a neighbour kills the process."""
    note("start", f"innocent-{n}")
    time.sleep(1.0)
    note("end", f"innocent-{n}")
    return n


@app.task
def poison() -> None:
    """Kills whichever process runs it."""
    note("start", "poison")
    time.sleep(0.2)
    os._exit(3)
