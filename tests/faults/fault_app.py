"""The app the fault suite's worker processes run. Every execution is logged outside the
library (a line when the body starts, one when it ends, per process) so that the test
counts runs that the store itself might misreport.

Settings come from the environment so one module serves every scenario:
FAULT_LOG_DIR (where executions are logged), FAULT_LEASE_S, FAULT_MAX_CRASHES,
FAULT_LONG_S (how long ``long_job`` sleeps).
"""

from __future__ import annotations

import os
import time

from offload import Offload, Retry, current_job

app = Offload(
    lease_s=float(os.environ.get("FAULT_LEASE_S", "2")),
    max_crashes=int(os.environ.get("FAULT_MAX_CRASHES", "5")),
)


def log_line(kind: str, n: int) -> None:
    """One whole line per write (O_APPEND): concurrent writers never interleave."""
    path = os.path.join(os.environ["FAULT_LOG_DIR"], f"{os.getpid()}.log")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{kind} {n} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)


@app.task(retries=3, backoff=0.1)
def short_job(n: int) -> int:
    log_line("S", n)
    time.sleep(0.03)
    log_line("E", n)
    return n


@app.task(retries=3, backoff=0.1)
def long_job(n: int) -> int:
    """A plain ``def`` task (it runs in a thread) longer than the workers' grace."""
    log_line("S", n)
    time.sleep(float(os.environ.get("FAULT_LONG_S", "2")))
    log_line("E", n)
    return n


#: What ``bad_outcome`` does once its body has run: each is an outcome some store cannot hold.
BAD_OUTCOMES = ("surrogate", "nul", "huge_delay", "surrogate_progress", "surrogate_result")


@app.task(retries=2, backoff=0.1)
def bad_outcome(n: int, kind: str) -> str:
    log_line("S", n)
    log_line("E", n)
    if kind == "surrogate":  # a file name from os.listdir on a badly encoded disk
        raise FileNotFoundError(f"cannot open report-{chr(0xDCFF)}.txt")
    if kind == "nul":
        raise ValueError("a NUL \x00 inside the message")
    if kind == "huge_delay":
        raise Retry("come back much later", delay_s=1e14)
    if kind == "surrogate_progress":
        current_job().set_progress(0.5, f"reading {chr(0xDCFF)}")
        time.sleep(1.0)  # let the progress loop try to store it
        return "ok"
    if kind == "surrogate_result":
        return f"name-{chr(0xDCFF)}"
    raise AssertionError(kind)
