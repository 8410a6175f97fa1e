"""Fair queues end to end: a worker serves a small tenant behind a big tenant's backlog.

The conformance suite measures the claim order store by store; this runs the
real worker over the app's ``fair_queues`` and counts how many jobs ran before
the small tenant's one.
"""

from __future__ import annotations

import pytest

from offload import JobState, Offload
from offload.backends.base import IdsParams
from offload.errors import ConfigurationError
from worker_helpers import WorkerThread, wait_until

FLOOD = 300


def run_flood_then_one(url: str, fair: bool) -> int:
    """How many of the big tenant's jobs were claimed before the small tenant's single job
    (started in an earlier claim: the jobs of one claim share its start time, and the
    order their threads happen to run in is the OS's, not the queue's)."""
    app = Offload(url, fair_queues=["convert"] if fair else [])

    @app.task(queue="convert")
    def convert(owner: str, n: int) -> None: ...

    try:
        big = convert.enqueue_many(convert.options(owner="big").s("big", n) for n in range(FLOOD))
        small = convert.options(owner="small").enqueue("small", 0)
        # Claims of the free slots only: this counts claims, and jobs claimed ahead (about
        # 20 ms of work, tests/test_worker_prefetch.py) would blur the count by a batch.
        with WorkerThread(app, queues=["convert"], concurrency=4, idle_check_s=0.05, prefetch=0):
            wait_until(lambda: small.refresh().state is JobState.SUCCEEDED, what="small job")
        started = small.record.started_at
        assert started is not None
        stored = app.backend.blocking.get(IdsParams(ids=[j.id for j in big]))
        return sum(1 for r in stored if r.started_at is not None and r.started_at < started)
    finally:
        app.close()


def test_a_small_tenant_waits_a_few_jobs_not_the_whole_backlog(store_url: str) -> None:
    waited_fair = run_flood_then_one(store_url, fair=True)
    waited_fifo = run_flood_then_one(store_url, fair=False)
    # Fair: in the first claim (4 slots). FIFO: behind the whole flood.
    assert waited_fair == 0, waited_fair
    assert waited_fifo >= FLOOD - 4, waited_fifo


def test_fair_queues_take_a_list_of_names() -> None:
    with pytest.raises(ConfigurationError, match="list of queue names"):
        Offload("memory://", fair_queues="convert")
    with pytest.raises(ConfigurationError, match="queue must be"):
        Offload("memory://", fair_queues=[""])
