"""End to end on every store: an error text a store cannot encode fails only its own job.

A file name from ``os.listdir`` (a lone surrogate) or a NUL in an exception message
used to kill the worker's acknowledgement loop on SQLite and PostgreSQL (issue 12,
defect 1): the burst worker never finished. Now the job ends dead with its message
stored escaped, and the other job of the same flush succeeds.
"""

from __future__ import annotations

import pytest

from offload import JobState, Offload
from worker_helpers import WorkerThread


@pytest.mark.parametrize("text", ["report-\udcff.txt", "a NUL \x00 here"])
def test_an_error_text_the_store_cannot_encode_fails_only_its_job(
    store_url: str, text: str
) -> None:
    app = Offload(store_url, default_retries=0)

    @app.task
    def broken(n: int) -> int:
        raise OSError(f"cannot read {text!s} ({n})")

    @app.task
    def fine(n: int) -> int:
        return n

    bad = broken.enqueue(1)
    good = fine.enqueue(2)
    try:
        WorkerThread(app, burst=True).__enter__().join(timeout_s=30)
        failed = app.job(bad.id).record
        assert failed.state is JobState.DEAD
        assert failed.error is not None and failed.error.message.startswith("cannot read ")
        assert app.job(good.id).state is JobState.SUCCEEDED
    finally:
        app.close()
