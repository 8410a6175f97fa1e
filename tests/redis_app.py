"""The app the Redis restart test's worker processes run: each execution is logged by pid."""

from __future__ import annotations

import os
import time

from offload import Offload, current_job

# Leases short enough that a job whose worker lost track of it comes back within seconds.
app = Offload(lease_s=5.0)


@app.task(retries=10, backoff=0.2)
def tick(n: int) -> int:
    time.sleep(0.01)
    with open(os.path.join(os.environ["EXEC_LOG_DIR"], f"{os.getpid()}.log"), "a") as log:
        log.write(f"{current_job().id} {n}\n")
    return n
