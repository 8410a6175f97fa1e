"""Values a store cannot hold, duplicate ids, follow-ups and mark lifetimes, on every store.

A value one job carries must fail only that job: ``enqueue`` refuses it with
``ValueRejected`` naming the job and the field and stores nothing; ``finish`` stores
a text it cannot encode escaped rather than fail the worker's whole batch.
"""

from __future__ import annotations

import math

import msgspec
import pytest
from conformance_helpers import (
    BOOM,
    claim_one,
    enqueue,
    enqueue_one,
    finish,
    get,
    get_one,
    new_job,
)

from offload.backends.base import (
    Backend,
    DuplicateJob,
    EnqueueParams,
    FinishParams,
    IdsParams,
    MarkNamesParams,
    MarkParams,
    Outcome,
    OutcomeKind,
    ProgressParams,
    ProgressUpdate,
    PruneParams,
    QueryParams,
    ValueRejected,
)
from offload.records import ErrorInfo
from offload.states import JobState


async def _count(backend: Backend) -> int:
    return len((await backend.query(QueryParams(limit=1000))).jobs)


# -- enqueue: values no store can hold --------------------------------------------


def _nested(depth: int) -> dict[str, object]:
    """Deeper than any JSON encoder recurses."""
    outer: dict[str, object] = {}
    inner = outer
    for _ in range(depth):
        inner["a"] = inner = {}
    return outer


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"delay_s": math.nan}, "delay_s"),
        ({"delay_s": math.inf}, "delay_s"),
        ({"delay_s": 1e14}, "delay_s"),
        ({"run_at": 1e14}, "run_at"),
        ({"run_at": -math.inf}, "run_at"),
        ({"lease_s": math.nan}, "lease_s"),
        ({"timeout_s": math.inf}, "timeout_s"),
        ({"priority": 2**40}, "priority"),
        ({"key": "report-\udcff.txt"}, "key"),
        ({"owner": "x\udcff"}, "owner"),
        ({"meta": {"file": "report-\udcff.txt"}}, "meta"),
        ({"meta": _nested(3000)}, "meta"),
    ],
)
async def test_enqueue_refuses_a_value_no_store_can_hold_and_stores_nothing(
    backend: Backend,
    backend_name: str,
    request: pytest.FixtureRequest,
    fields: dict[str, object],
    field: str,
) -> None:
    good = new_job()
    bad = new_job(**fields)
    with pytest.raises(ValueRejected) as caught:
        await enqueue(backend, good, bad)
    assert bad.id in str(caught.value) and field in str(caught.value)
    assert await get(backend, good.id, bad.id) == [], "all or nothing"
    assert await _count(backend) == 0
    assert (await enqueue_one(backend)).state is JobState.QUEUED  # the store still works


async def test_nul_in_a_text_field_is_refused_only_where_the_store_cannot_hold_it(
    backend: Backend, backend_name: str
) -> None:
    job = new_job(key="k\x00y", meta={"note": "a\x00b"})
    if backend_name == "postgres":  # text and jsonb cannot hold NUL
        with pytest.raises(ValueRejected, match=job.id):
            await enqueue(backend, job)
        assert await get(backend, job.id) == []
    else:
        await enqueue(backend, job)
        assert (await get_one(backend, job.id)).key == "k\x00y"


async def test_a_duplicate_id_raises_duplicate_job_and_stores_nothing(backend: Backend) -> None:
    existing = await enqueue_one(backend)
    fresh = new_job()
    with pytest.raises(DuplicateJob):
        await enqueue(backend, fresh, new_job(id=existing.id))
    assert await get(backend, fresh.id) == []
    with pytest.raises(DuplicateJob):
        backend.blocking.enqueue(EnqueueParams(jobs=[new_job(id=existing.id)]))


# -- finish: what a worker reports is stored --------------------------------------


@pytest.mark.parametrize("text", ["cannot read 'report-\udcff.txt'", "a NUL \x00 in it"])
@pytest.mark.parametrize("kind", [OutcomeKind.DEAD, OutcomeKind.RETRY])
async def test_finish_stores_an_error_text_the_store_cannot_encode_escaped(
    backend: Backend, text: str, kind: OutcomeKind
) -> None:
    await enqueue_one(backend)
    job = await claim_one(backend)
    error = ErrorInfo(type="OSError", message=text, traceback=f"Traceback\n  {text}")
    result = await finish(backend, job, kind, error=error)
    assert result.rejected == []
    stored = await get_one(backend, job.id)
    assert stored.state is (JobState.DEAD if kind is OutcomeKind.DEAD else JobState.SCHEDULED)
    assert stored.error is not None
    msgspec.json.encode(stored.error)  # every reader can encode what it reads back
    assert stored.error.message.startswith(text[:6])  # the text before the odd character


@pytest.mark.parametrize("delay_s", [math.nan, math.inf, 1e14])
async def test_finish_refuses_a_retry_delay_no_store_can_hold(
    backend: Backend, delay_s: float
) -> None:
    await enqueue_one(backend)
    job = await claim_one(backend)
    with pytest.raises(ValueRejected) as caught:
        await finish(backend, job, OutcomeKind.RETRY, error=BOOM, retry_delay_s=delay_s)
    assert job.id in str(caught.value) and "retry_delay_s" in str(caught.value)
    assert (await get_one(backend, job.id)).state is JobState.RUNNING, "nothing was stored"
    assert (await finish(backend, job)).rejected == []  # the same lease can still finish


async def test_progress_that_is_not_a_number_is_ignored_and_odd_text_stored(
    backend: Backend, backend_name: str, request: pytest.FixtureRequest
) -> None:
    """One update's NaN must not fail the other updates of the batch."""
    await enqueue(backend, new_job(), new_job())
    a = await claim_one(backend)
    b = await claim_one(backend)
    await backend.report_progress(
        ProgressParams(
            updates=[
                ProgressUpdate(id=a.id, delivery=a.delivery, progress=math.nan),
                ProgressUpdate(id=b.id, delivery=b.delivery, progress=0.5, message="f-\udcff"),
            ]
        )
    )
    got = {j.id: j for j in await get(backend, a.id, b.id)}
    assert got[a.id].progress == 0.0
    assert got[b.id].progress == 0.5 and (got[b.id].progress_message or "").startswith("f-")


# -- follow-ups: stored with the finish, only when it is taken -------------------


def _with_follow_ups(job_id: str, delivery: int, *follow_ups: object) -> FinishParams:
    return FinishParams(
        outcomes=[
            Outcome(
                id=job_id,
                delivery=delivery,
                kind=OutcomeKind.SUCCEEDED,
                result=b"1",
                follow_ups=list(follow_ups),  # type: ignore[arg-type]
            )
        ]
    )


async def test_an_accepted_finish_stores_its_follow_ups(backend: Backend) -> None:
    await enqueue_one(backend)
    job = await claim_one(backend)
    nxt, later = new_job(task="tests.next"), new_job(delay_s=60.0)
    result = await backend.finish(_with_follow_ups(job.id, job.delivery, nxt, later))
    assert result.rejected == []
    assert (await get_one(backend, job.id)).state is JobState.SUCCEEDED
    stored = {j.id: j for j in await get(backend, nxt.id, later.id)}
    assert stored[nxt.id].state is JobState.QUEUED and stored[nxt.id].task == "tests.next"
    assert stored[later.id].state is JobState.SCHEDULED


async def test_a_follow_up_whose_id_exists_is_skipped(backend: Backend) -> None:
    existing = await enqueue_one(backend, task="tests.first")
    await enqueue_one(backend)
    job = await claim_one(backend)
    if job.id == existing.id:
        job = await claim_one(backend)
    repeat = new_job(id=existing.id, task="tests.other")
    fresh = new_job()
    result = await backend.finish(_with_follow_ups(job.id, job.delivery, repeat, fresh))
    assert result.rejected == []
    assert (await get_one(backend, existing.id)).task == "tests.first"
    assert (await get_one(backend, fresh.id)).state is JobState.QUEUED


async def test_a_rejected_finish_stores_no_follow_up(backend: Backend) -> None:
    await enqueue_one(backend)
    stale = await claim_one(backend)
    await backend.cancel(IdsParams(ids=[stale.id]))
    cancelled = new_job()
    result = await backend.finish(_with_follow_ups(stale.id, stale.delivery, cancelled))
    assert result.rejected == [stale.id]
    stale_delivery = new_job()
    result = await backend.finish(_with_follow_ups(stale.id, stale.delivery - 1, stale_delivery))
    assert result.rejected == [stale.id]
    assert await get(backend, cancelled.id, stale_delivery.id) == []


# -- marks: a lifetime ------------------------------------------------------------


async def test_a_mark_with_a_lifetime_expires(backend: Backend, clock) -> None:
    names = MarkNamesParams(names=["batch:1", "cron:x"])
    assert await backend.set_mark(MarkParams(name="batch:1", value="open", ttl_s=10.0))
    assert await backend.set_mark(MarkParams(name="cron:x", value="1"))
    clock.advance(9.0)
    assert await backend.get_marks(names) == {"batch:1": "open", "cron:x": "1"}
    clock.advance(2.0)
    assert await backend.get_marks(names) == {"cron:x": "1"}
    # an expired mark counts as absent: compare-and-set from "absent" takes it again
    assert not await backend.set_mark(MarkParams(name="batch:1", value="x", expected="open"))
    assert await backend.set_mark(MarkParams(name="batch:1", value="again", ttl_s=5.0))
    assert await backend.get_marks(names) == {"batch:1": "again", "cron:x": "1"}
    clock.advance(6.0)
    await backend.prune(PruneParams(finished_before=clock.now))
    assert await backend.get_marks(names) == {"cron:x": "1"}


async def test_an_update_may_give_a_mark_a_lifetime_or_take_it_away(
    backend: Backend, clock
) -> None:
    names = MarkNamesParams(names=["m"])
    assert await backend.set_mark(MarkParams(name="m", value="1"))
    assert await backend.set_mark(MarkParams(name="m", value="2", expected="1", ttl_s=5.0))
    clock.advance(6.0)
    assert await backend.get_marks(names) == {}
    assert await backend.set_mark(MarkParams(name="m", value="3", ttl_s=5.0))
    assert await backend.set_mark(MarkParams(name="m", value="4", expected="3"))
    clock.advance(60.0)
    assert await backend.get_marks(names) == {"m": "4"}
