"""Backend conformance: per-minute counts, for charts and metrics."""

from __future__ import annotations

from conformance_helpers import enqueue, new_job

from offload.backends.base import Backend, CountsParams, CountsQuery, PruneParams
from offload.records import MinuteCounts


def _row(minute: int, source: str, **counts: object) -> MinuteCounts:
    return MinuteCounts(minute=minute, queue="docs", task="convert", source=source, **counts)  # type: ignore[arg-type]


async def test_the_store_counts_enqueued_jobs_per_minute_queue_and_task(
    backend: Backend, clock: object
) -> None:
    minute = int(clock.time() // 60)  # type: ignore[attr-defined]
    await enqueue(backend, *[new_job(queue="docs", task="convert") for _ in range(3)])
    await enqueue(backend, new_job(queue="docs", task="convert"), new_job(queue="mail"))
    rows = await backend.read_counts(CountsQuery(since_minute=minute, until_minute=minute))
    enqueued = {(r.queue, r.task): r.enqueued for r in rows if r.source == "enqueue"}
    assert enqueued == {("docs", "convert"): 4, ("mail", "tests.echo"): 1}


async def test_a_source_s_rows_replace_its_earlier_ones(backend: Backend) -> None:
    wait = [0] * 19
    wait[3] = 2
    first = _row(100, "w1", started=2, succeeded=1, wait_ms=wait, run_ms=[1] + [0] * 18)
    await backend.record_counts(CountsParams(rows=[first], ttl_s=3600))
    again = _row(100, "w1", started=5, succeeded=4, retried=1, dead=1, wait_ms=wait,
                 run_ms=[4] + [0] * 18)  # fmt: skip
    other = _row(100, "w2", started=1)
    await backend.record_counts(CountsParams(rows=[again, other], ttl_s=3600))
    rows = await backend.read_counts(CountsQuery(since_minute=100, until_minute=100))
    assert sorted(rows, key=lambda r: r.source) == [again, other]
    assert await backend.read_counts(CountsQuery(since_minute=101, until_minute=200)) == []
    only = await backend.read_counts(CountsQuery(since_minute=0, until_minute=200, queue="mail"))
    assert only == []


async def test_rows_go_after_their_lifetime_or_when_pruned(backend: Backend, clock: object) -> None:
    await backend.record_counts(CountsParams(rows=[_row(100, "w1", started=1)], ttl_s=60))
    await backend.record_counts(CountsParams(rows=[_row(101, "w1", started=1)], ttl_s=3600))
    clock.advance(120)  # type: ignore[attr-defined]
    rows = await backend.read_counts(CountsQuery(since_minute=0, until_minute=200))
    assert [r.minute for r in rows] == [101]
    await backend.prune(PruneParams(finished_before=0, counts_before=102 * 60))
    assert await backend.read_counts(CountsQuery(since_minute=0, until_minute=200)) == []
