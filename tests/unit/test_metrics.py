"""Percentiles read from merged per-minute histograms."""

from __future__ import annotations

import math

from offload.admin.metrics import percentile_ms, summarize
from offload.records import DURATION_BUCKETS_MS, MinuteCounts
from offload.worker.tally import bucket

EMPTY = [0] * (len(DURATION_BUCKETS_MS) + 1)


def _hist(**at_ms: int) -> list[int]:
    out = list(EMPTY)
    for ms, count in at_ms.items():
        out[bucket(int(ms.removeprefix("ms")) / 1000)] += count
    return out


def test_a_percentile_is_the_upper_bound_of_its_bucket() -> None:
    histogram = _hist(ms3=90, ms150=9, ms4000=1)
    assert percentile_ms(histogram, 50) == 5.0
    assert percentile_ms(histogram, 95) == 200.0
    assert percentile_ms(histogram, 99) == 200.0
    assert percentile_ms(_hist(ms4000=1), 50) == 5000.0
    assert percentile_ms(EMPTY, 50) is None
    assert percentile_ms(_hist(ms99999999=1), 50) == math.inf


def test_sources_are_summed_per_minute_queue_and_task() -> None:
    rows = [
        MinuteCounts(minute=1, queue="q", task="t", source="enqueue", enqueued=5),
        MinuteCounts(
            minute=1, queue="q", task="t", source="w1", started=2, succeeded=2, run_ms=_hist(ms3=2)
        ),
        MinuteCounts(
            minute=1, queue="q", task="t", source="w2", started=1, dead=1, run_ms=_hist(ms700=1)
        ),
        MinuteCounts(minute=2, queue="q", task="t", source="w1", started=1),
    ]
    first, second = summarize(rows)
    assert (first.minute_s, first.enqueued, first.started, first.succeeded, first.dead) == (
        60.0, 5, 3, 2, 1)  # fmt: skip
    assert first.run_ms == {50: 5.0, 95: 1000.0, 99: 1000.0}
    assert (second.minute_s, second.started, second.run_ms) == (120.0, 1, {})
