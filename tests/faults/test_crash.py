"""Reliability by breaking things: SIGKILL workers mid-run and count lost and duplicated jobs."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import crash_app
import pytest

from offload.backends.base import JobFilter, QueryParams
from offload.states import JobState

JOBS = 1200
WORKERS = 2
DEADLINE_S = 240


def start_worker(url: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "offload", "worker", "crash_app:app", "-c", "4", "--url", url,
         "--log-level", "ERROR"],
        env=env,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgres", "redis"])
def test_sigkilled_workers_lose_no_job(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    if store == "sqlite":
        url = f"sqlite:///{tmp_path}/crash.db"
    else:
        url = request.getfixturevalue(f"{store}_url")  # postgres_url, redis_url
    logs = tmp_path / "executions"
    logs.mkdir()
    env = {**os.environ, "OFFLOAD_URL": url, "CRASH_LOG_DIR": str(logs),
           "PYTHONPATH": os.path.dirname(__file__)}  # fmt: skip
    app = crash_app.app
    app._backend = None  # one module-level app, pointed at each store in turn
    app.url = url
    for start in range(0, JOBS, 500):
        crash_app.short_job.enqueue_many(
            [crash_app.short_job.s(n) for n in range(start, min(start + 500, JOBS))]
        )
    rng = random.Random(1)
    workers = [start_worker(url, env) for _ in range(WORKERS)]
    kills = 0
    deadline = time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline:
            counts = collections.Counter[str]()
            for row in app.backend.blocking.stats():
                counts.update(row.counts)
            if counts["succeeded"] + counts["dead"] + counts["cancelled"] == JOBS:
                break
            time.sleep(rng.uniform(0.7, 1.3))
            if counts["queued"] + counts["running"] > 100:  # keep killing while work is left
                victim = rng.randrange(WORKERS)
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                kills += 1
                workers[victim] = start_worker(url, env)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=60)

    executions = collections.Counter[int]()
    for log in logs.iterdir():
        executions.update(int(line) for line in log.read_text().split())
    page = app.backend.blocking.query(QueryParams(filter=JobFilter(), limit=JOBS + 1))
    states = collections.Counter(job.state for job in page.jobs)
    not_succeeded = JOBS - states[JobState.SUCCEEDED]
    never_ran = sum(1 for n in range(JOBS) if executions[n] == 0)
    duplicated = sum(count - 1 for count in executions.values() if count > 1)
    with capsys.disabled():
        print(
            f"\ncrash test on {store}: {JOBS} jobs, {WORKERS} workers, {kills} SIGKILLs, "
            f"{not_succeeded} not succeeded, {never_ran} never ran (lost), "
            f"{duplicated} duplicate executions, states {dict(states)}"
        )
        for job in page.jobs:
            if job.state is not JobState.SUCCEEDED:
                print(
                    f"  {job.id} {job.state.value} attempt {job.attempt}, crashes "
                    f"{job.crashes}: {job.error}"
                )
    app.close()
    assert kills >= 5, "the run ended before enough workers were killed to mean anything"
    assert len(page.jobs) == JOBS
    assert never_ran == 0
    assert not_succeeded == 0
