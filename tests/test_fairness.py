"""Fair queues end to end: a worker serves a small tenant behind a big tenant's backlog.

The conformance suite measures the claim order store by store; this runs the
real worker over the app's ``fair_queues`` and counts how many jobs ran before
the small tenant's one.
"""

from __future__ import annotations

import threading

import pytest

from offload import JobState, Offload
from offload.errors import ConfigurationError
from worker_helpers import WorkerThread, wait_until

FLOOD = 300


def run_flood_then_one(url: str, fair: bool) -> int:
    """How many of the big tenant's jobs ran before the small tenant's single job."""
    app = Offload(url, fair_queues=["convert"] if fair else [])
    order: list[str] = []
    lock = threading.Lock()

    @app.task(queue="convert")
    def convert(owner: str, n: int) -> None:
        with lock:
            order.append(owner)

    try:
        convert.enqueue_many(convert.options(owner="big").s("big", n) for n in range(FLOOD))
        small = convert.options(owner="small").enqueue("small", 0)
        with WorkerThread(app, queues=["convert"], concurrency=4, idle_check_s=0.05):
            wait_until(lambda: small.refresh().state is JobState.SUCCEEDED, what="small job")
        return order.index("small")
    finally:
        app.close()


def test_a_small_tenant_waits_a_few_jobs_not_the_whole_backlog(store_url: str) -> None:
    waited_fair = run_flood_then_one(store_url, fair=True)
    waited_fifo = run_flood_then_one(store_url, fair=False)
    # Fair: behind at most the first claim (4 slots). FIFO: behind the whole flood.
    assert waited_fair < 4, waited_fair
    assert waited_fifo >= FLOOD - 4, waited_fifo


def test_fair_queues_take_a_list_of_names() -> None:
    with pytest.raises(ConfigurationError, match="list of queue names"):
        Offload("memory://", fair_queues="convert")
    with pytest.raises(ConfigurationError, match="queue must be"):
        Offload("memory://", fair_queues=[""])
