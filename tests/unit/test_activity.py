"""The overview's window of activity: per queue totals and p95s from merged histograms
(two sources' minutes add up, not average), chart points per bucket, HTTP rows left out."""

from __future__ import annotations

import time
from contextlib import closing

import pytest

from offload import Offload
from offload.backends.base import CountsParams
from offload.errors import InvalidQuery
from offload.records import MinuteCounts


def test_activity_merges_sources_and_minutes() -> None:
    with closing(Offload("memory://")) as app:
        minute = int(time.time() // 60)
        fast = [0, 10]  # ten jobs in the second bucket
        slow = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]  # five far slower
        rows = [
            MinuteCounts(minute=minute - 1, queue="docs", task="t", source="w1", started=10,
                         succeeded=9, dead=1, run_ms=fast, wait_ms=fast),
            MinuteCounts(minute=minute, queue="docs", task="t", source="w2", started=5,
                         succeeded=5, run_ms=slow, wait_ms=fast),
            MinuteCounts(minute=minute, queue="offload.http", task="api", source="w2",
                         started=99, dead=3),
        ]  # fmt: skip
        app.backend.blocking.record_counts(CountsParams(rows=rows, ttl_s=3600))
        seen = app.admin.activity(span="hour")
        assert set(seen.by_queue) == {"docs"}  # timed requests are not jobs
        docs = seen.by_queue["docs"]
        assert (docs.started, docs.succeeded, docs.dead) == (15, 14, 1)
        assert docs.run_hist[:2] == [0, 10] and docs.run_hist[10] == 5
        fast_only = app.admin.activity(span="hour").by_queue["docs"].wait_p95_ms()
        assert docs.run_p95_ms() is not None and fast_only is not None
        assert docs.run_p95_ms() > fast_only  # the slow five are past the 95th percentile
        assert len(seen.points) == 61 and sum(p.failed_per_min for p in seen.points) == 1
        day = app.admin.activity(span="day")
        assert sum(p.finished_per_min * 15 for p in day.points) == 15
        with pytest.raises(InvalidQuery, match="unknown span"):
            app.admin.activity(span="year")
