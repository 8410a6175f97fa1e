"""Backend conformance: what a job's end sets off, stored in the same step, on every path.

Follow-ups stored with a job go in when it ends in one of their states, whoever ends
it (its worker, the reaper, a person); a batch counts its members down as they end and
stores its callback in the step that ends the last one. No service scans anything.
"""

from __future__ import annotations

import asyncio

from conformance_helpers import BOOM, claim, claim_one, enqueue, finish, get, get_one, new_job

from offload.backends.base import (
    Backend,
    BatchQueryParams,
    EnqueueParams,
    IdsParams,
    OutcomeKind,
    PruneParams,
    ReapParams,
)
from offload.records import BatchOpen, EventKind, FollowUp, JobRecord, NewJob
from offload.states import JobState

FINAL = (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED)


def _with_follow_ups(**fields: object) -> tuple[NewJob, NewJob, NewJob]:
    """A parent with one follow-up for success and one for failure or cancel."""
    on_success = new_job(queue="after", task="tests.on_success")
    on_failure = new_job(queue="after", task="tests.on_failure")
    parent = new_job(
        follow_ups=(
            FollowUp(on=(JobState.SUCCEEDED,), job=on_success),
            FollowUp(on=(JobState.DEAD, JobState.CANCELLED), job=on_failure),
        ),
        **fields,
    )
    return parent, on_success, on_failure


async def _ids(backend: Backend, *ids: str) -> list[str]:
    return sorted(j.id for j in await get(backend, *ids))


async def test_a_worker_s_success_stores_only_the_success_follow_up(backend: Backend) -> None:
    parent, ok, failed = _with_follow_ups()
    await enqueue(backend, parent)
    assert await _ids(backend, ok.id, failed.id) == []  # nothing before the end
    await finish(backend, await claim_one(backend), result=b"1")
    assert await _ids(backend, ok.id, failed.id) == [ok.id]
    stored = await get_one(backend, ok.id)
    assert (stored.state, stored.queue, stored.task) == (JobState.QUEUED, "after", ok.task)


async def test_a_retry_is_not_an_end_but_a_dead_job_is(backend: Backend) -> None:
    parent, ok, failed = _with_follow_ups(max_attempts=2)
    await enqueue(backend, parent)
    await finish(backend, await claim_one(backend), OutcomeKind.RETRY, error=BOOM)
    assert await _ids(backend, ok.id, failed.id) == []
    await finish(backend, await claim_one(backend), OutcomeKind.DEAD, error=BOOM)
    assert await _ids(backend, ok.id, failed.id) == [failed.id]


async def test_the_reaper_ending_a_job_stores_its_follow_up(
    backend: Backend, clock: object
) -> None:
    parent, ok, failed = _with_follow_ups(lease_s=5)
    await enqueue(backend, parent)
    await claim(backend)
    clock.advance(6)  # type: ignore[attr-defined]
    await backend.reap_expired(ReapParams(max_crashes=1))
    assert (await get_one(backend, parent.id)).state is JobState.DEAD
    assert await _ids(backend, ok.id, failed.id) == [failed.id]


async def test_a_person_s_cancel_stores_the_follow_up_of_a_queued_or_running_job(
    backend: Backend,
) -> None:
    queued, _, queued_failed = _with_follow_ups()
    running, _, running_failed = _with_follow_ups(queue="busy")
    await enqueue(backend, queued, running)
    await claim_one(backend, queues=["busy"])
    await backend.cancel(IdsParams(ids=[queued.id, running.id]))
    assert await _ids(backend, queued_failed.id, running_failed.id) == sorted(
        [queued_failed.id, running_failed.id]
    )


async def test_a_refused_finish_stores_no_follow_up(backend: Backend) -> None:
    parent, ok, failed = _with_follow_ups()
    await enqueue(backend, parent)
    job = await claim_one(backend)
    await backend.cancel(IdsParams(ids=[parent.id]))  # stores the cancel follow-up
    result = await finish(backend, job, result=b"1")  # fenced out
    assert result.rejected == [parent.id]
    assert await _ids(backend, ok.id, failed.id) == [failed.id]


async def test_a_follow_up_is_stored_once_even_if_its_parent_ends_twice(backend: Backend) -> None:
    parent, _, failed = _with_follow_ups()
    await enqueue(backend, parent)
    await backend.cancel(IdsParams(ids=[parent.id]))
    await backend.retry(IdsParams(ids=[parent.id]))  # a person queues it again
    await backend.cancel(IdsParams(ids=[parent.id]))  # and it ends the same way
    assert await _ids(backend, failed.id) == [failed.id]


async def test_follow_ups_are_pushed_as_enqueued_in_the_step(backend: Backend) -> None:
    parent, ok, _ = _with_follow_ups()
    await enqueue(backend, parent)
    job = await claim_one(backend)
    async with backend.subscribe() as stream:
        await finish(backend, job, result=b"1")
        got = []
        iterator = aiter(stream)
        async with asyncio.timeout(10):
            while len(got) < 2:
                got.extend(await anext(iterator))
        assert [(e.kind, e.id) for e in got] == [
            (EventKind.SUCCEEDED, parent.id), (EventKind.ENQUEUED, ok.id)]  # fmt: skip


def _members(batch_id: str, n: int, **fields: object) -> list[NewJob]:
    return [new_job(batch=batch_id, queue="members", **fields) for _ in range(n)]


async def _open(backend: Backend, members: list[NewJob], callback: NewJob | None) -> str:
    batch_id = members[0].batch or ""
    opened = BatchOpen(id=batch_id, callback=callback)
    await backend.enqueue(EnqueueParams(jobs=members, batch=opened))
    return batch_id


async def _batch(backend: Backend, batch_id: str) -> object:
    (record,) = await backend.batches(BatchQueryParams(ids=[batch_id]))
    return record


async def test_a_batch_counts_down_and_stores_its_callback_with_the_last_end(
    backend: Backend, clock: object
) -> None:
    members = _members("b-1", 3, max_attempts=1, lease_s=5)
    callback = new_job(queue="callbacks", task="tests.done", meta={"batch_callback": "b-1"})
    await _open(backend, members, callback)
    record = await _batch(backend, "b-1")
    assert (record.total, record.remaining, record.completed_at) == (3, 3, None)  # type: ignore[attr-defined]
    assert record.callback_id == callback.id  # type: ignore[attr-defined]
    first, second, third = await claim(backend, ["members"])
    await finish(backend, first, result=b"1")
    await finish(backend, second, OutcomeKind.DEAD, error=BOOM)
    assert (await _batch(backend, "b-1")).remaining == 1  # type: ignore[attr-defined]
    assert await get(backend, callback.id) == []
    async with backend.subscribe() as stream:
        clock.advance(6)  # type: ignore[attr-defined]
        await backend.reap_expired(ReapParams(max_crashes=1))  # the last one dies, reaped
        got: list[object] = []
        iterator = aiter(stream)
        async with asyncio.timeout(10):
            while len(got) < 3:
                got.extend(await anext(iterator))
    done = await _batch(backend, "b-1")
    assert (done.remaining, done.completed_at) == (0, clock.time())  # type: ignore[attr-defined]
    stored: JobRecord = await get_one(backend, callback.id)
    assert (stored.queue, stored.task, stored.state) == ("callbacks", "tests.done", JobState.QUEUED)
    kinds = [(e.kind, e.id or e.batch) for e in got]  # type: ignore[attr-defined]
    assert kinds == [
        (EventKind.DEAD, third.id),
        (EventKind.BATCH_PROGRESS, "b-1"),
        (EventKind.ENQUEUED, callback.id),
    ]
    progress = got[1]
    assert (progress.progress, progress.message) == (1.0, "3 of 3 done")  # type: ignore[attr-defined]


async def test_cancel_and_delete_count_as_ends_and_a_retry_reopens(backend: Backend) -> None:
    members = _members("b-2", 3)
    callback = new_job(queue="callbacks")
    await _open(backend, members, callback)
    await backend.cancel(IdsParams(ids=[members[0].id]))
    await backend.retry(IdsParams(ids=[members[0].id]))  # waits for it again
    assert (await _batch(backend, "b-2")).remaining == 3  # type: ignore[attr-defined]
    await backend.delete(IdsParams(ids=[members[1].id]))  # it will never end: not waited for
    await backend.cancel(IdsParams(ids=[members[0].id, members[2].id]))
    assert (await _batch(backend, "b-2")).remaining == 0  # type: ignore[attr-defined]
    assert [j.id for j in await get(backend, callback.id)] == [callback.id]
    await backend.retry(IdsParams(ids=[members[0].id]))  # after completion: no reopening
    assert (await _batch(backend, "b-2")).remaining == 0  # type: ignore[attr-defined]


async def test_open_batches_are_listed_and_completed_ones_pruned(
    backend: Backend, clock: object
) -> None:
    await _open(backend, _members("b-3", 1), None)
    await _open(backend, _members("b-4", 1), None)
    (member,) = await claim(backend, ["members"], limit=1)
    await finish(backend, member)
    open_ones = await backend.batches(BatchQueryParams(open_only=True))
    everything = await backend.batches(BatchQueryParams())
    assert len(open_ones) == 1
    assert sorted(b.id for b in everything) == ["b-3", "b-4"]
    clock.advance(10)  # type: ignore[attr-defined]
    await backend.prune(PruneParams(finished_before=clock.time()))  # type: ignore[attr-defined]
    assert [b.id for b in await backend.batches(BatchQueryParams())] == [open_ones[0].id]


async def test_a_batch_enqueue_that_fails_opens_nothing(backend: Backend) -> None:
    members = _members("b-5", 2)
    await enqueue(backend, members[0])  # its id is taken: the batch call is refused whole
    try:
        await _open(backend, members, None)
    except ValueError:
        pass
    assert await backend.batches(BatchQueryParams(ids=["b-5"])) == []
