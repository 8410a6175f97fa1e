"""Backend conformance: count, free-text and time filters, and delete."""

from __future__ import annotations

import pytest
from conformance_helpers import claim_one, enqueue, enqueue_one, get, new_job

from offload.backends.base import Backend, CountParams, IdsParams, JobFilter, QueryParams
from offload.states import JobState


async def _ids(backend: Backend, **fields: object) -> list[str]:
    page = await backend.query(QueryParams(filter=JobFilter(**fields), limit=100))  # type: ignore[arg-type]
    return sorted(j.id for j in page.jobs)


async def test_count_matches_the_same_filter_as_query(backend: Backend) -> None:
    await enqueue(backend, *[new_job(owner="alice") for _ in range(3)])
    await enqueue(backend, *[new_job(owner="bob", queue="docs") for _ in range(2)])
    assert await backend.count(CountParams()) == 5
    assert await backend.count(CountParams(filter=JobFilter(owner="alice"))) == 3
    docs = JobFilter(queue="docs", states=[JobState.QUEUED])
    assert await backend.count(CountParams(filter=docs)) == 2
    none = JobFilter(queue="docs", states=[JobState.DEAD])
    assert await backend.count(CountParams(filter=none)) == 0


@pytest.mark.parametrize(
    "needle", ["report-2026", "REPORT-2026", "convert_doc", "tenant-42", "quarterly"]
)
async def test_text_matches_task_owner_arguments_and_id_case_insensitively(
    backend: Backend, needle: str
) -> None:
    payload = b'{"args": ["Quarterly report-2026.docx"], "kwargs": {}}'
    hit = await enqueue_one(backend, task="app.convert_doc", owner="tenant-42", payload=payload)
    await enqueue_one(backend, task="app.other", owner="tenant-7")
    assert await _ids(backend, text=needle) == [hit.id]
    assert await backend.count(CountParams(filter=JobFilter(text=needle))) == 1


async def test_text_matches_part_of_an_id(backend: Backend) -> None:
    hit = await enqueue_one(backend)
    await enqueue_one(backend)
    assert hit.id in await _ids(backend, text=hit.id[-10:])


async def test_text_with_sql_and_glob_characters_is_taken_literally(backend: Backend) -> None:
    payload = b'{"args": ["100%_done*[x]"], "kwargs": {}}'
    hit = await enqueue_one(backend, payload=payload)
    await enqueue_one(backend, payload=b'{"args": ["100 done"], "kwargs": {}}')
    for needle in ("100%_done*[x]", "%_done", "*[x]"):
        assert await _ids(backend, text=needle) == [hit.id], needle
    assert await _ids(backend, text="%") == [hit.id]
    assert await _ids(backend, text="'; drop table jobs; --") == []


async def test_created_time_range_is_half_open(backend: Backend, clock: object) -> None:
    first = await enqueue_one(backend)
    clock.advance(10)  # type: ignore[attr-defined]
    second = await enqueue_one(backend)
    clock.advance(10)  # type: ignore[attr-defined]
    third = await enqueue_one(backend)
    window = {"created_after": second.created_at, "created_before": third.created_at}
    assert await _ids(backend, **window) == [second.id]
    assert await _ids(backend, created_before=second.created_at) == [first.id]
    assert await _ids(backend, created_after=second.created_at) == sorted([second.id, third.id])
    assert await backend.count(CountParams(filter=JobFilter(**window))) == 1  # type: ignore[arg-type]


async def test_delete_forgets_jobs_but_not_running_ones(backend: Backend) -> None:
    keyed = await enqueue_one(backend, key="only-one")
    running_job = await enqueue_one(backend, queue="busy")
    await claim_one(backend, queues=["busy"])
    gone = await backend.delete(IdsParams(ids=[keyed.id, running_job.id, "no-such-job"]))
    assert gone == [keyed.id]
    assert [j.id for j in await get(backend, keyed.id, running_job.id)] == [running_job.id]
    again = await enqueue_one(backend, key="only-one")  # the key is free again
    assert again.id != keyed.id
    assert await backend.delete(IdsParams(ids=[keyed.id])) == []


async def test_text_skips_the_arguments_of_secret_tasks(backend: Backend) -> None:
    secret = await enqueue_one(backend, task="app.login", payload=b'[["ann","hunter2"],{}]')
    plain = await enqueue_one(backend, task="app.echo", payload=b'[["hunter2"],{}]')
    skips = ["app.login"]

    async def found(text: str) -> set[str]:
        flt = JobFilter(text=text, text_skips=skips)
        page = await backend.query(QueryParams(filter=flt))
        assert await backend.count(CountParams(filter=flt)) == len(page.jobs)
        return {j.id for j in page.jobs}

    assert await found("hunter2") == {plain.id}
    assert await found("HUNTER") == {plain.id}
    assert await found("app.log") == {secret.id}  # its task's name is not secret
    assert await found(secret.id[-6:]) == {secret.id}
    everything = await backend.query(QueryParams(filter=JobFilter(text="hunter2")))
    assert {j.id for j in everything.jobs} == {secret.id, plain.id}  # without skips: both
