"""The app the crash test's worker processes run: each execution is logged by pid."""

from __future__ import annotations

import os
import time

from offload import Offload

# Short leases so a killed worker's jobs come back within seconds.
app = Offload(lease_s=2.0, max_crashes=5)


@app.task(retries=3, backoff=0.1)
def short_job(n: int) -> int:
    time.sleep(0.05)
    with open(os.path.join(os.environ["CRASH_LOG_DIR"], f"{os.getpid()}.log"), "a") as log:
        log.write(f"{n}\n")
    return n
