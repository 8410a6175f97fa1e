"""Small helpers shared by the conformance tests: build jobs and call the seam briefly."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from offload.backends.base import (
    Backend,
    ClaimParams,
    EnqueueParams,
    FinishParams,
    FinishResult,
    HeartbeatParams,
    HeartbeatResult,
    IdsParams,
    LeaseRef,
    Outcome,
    OutcomeKind,
)
from offload.ids import IdGenerator
from offload.records import ErrorInfo, JobRecord, NewJob

QUEUE = "default"
LEASE_S = 30.0
BOOM = ErrorInfo(type="ValueError", message="boom", traceback="Traceback ...")

new_id = IdGenerator()

START = 1_700_000_000.0


class FakeClock:
    """The backends' clock in tests: time moves only when a test says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def new_job(
    *, id: str | None = None, task: str = "tests.echo", queue: str = QUEUE, **fields: object
) -> NewJob:
    payload = fields.pop("payload", b'{"args": [1], "kwargs": {}}')
    return NewJob(id=id or new_id(), task=task, queue=queue, payload=payload, **fields)  # type: ignore[arg-type]


async def enqueue(backend: Backend, *jobs: NewJob) -> list[JobRecord]:
    return await backend.enqueue(EnqueueParams(jobs=list(jobs)))


async def enqueue_one(backend: Backend, **fields: object) -> JobRecord:
    (record,) = await enqueue(backend, new_job(**fields))  # type: ignore[arg-type]
    return record


async def claim(
    backend: Backend,
    queues: Iterable[str] = (QUEUE,),
    *,
    limit: int = 100,
    worker: str = "w1",
    lease_s: float = LEASE_S,
) -> list[JobRecord]:
    return await backend.claim(
        ClaimParams(queues=list(queues), limit=limit, worker=worker, lease_s=lease_s)
    )


async def claim_one(backend: Backend, **kwargs: object) -> JobRecord:
    claimed = await claim(backend, limit=1, **kwargs)  # type: ignore[arg-type]
    assert len(claimed) == 1, f"expected one job to claim, got {claimed}"
    return claimed[0]


async def get(backend: Backend, *ids: str) -> list[JobRecord]:
    return await backend.get(IdsParams(ids=list(ids)))


async def get_one(backend: Backend, job_id: str) -> JobRecord:
    found = await get(backend, job_id)
    assert len(found) == 1, f"job {job_id} not found"
    return found[0]


async def heartbeat(
    backend: Backend, *leases: tuple[str, int], worker: str = "w1", lease_s: float = LEASE_S
) -> HeartbeatResult:
    refs = [LeaseRef(id=i, delivery=d) for i, d in leases]
    return await backend.heartbeat(HeartbeatParams(leases=refs, worker=worker, lease_s=lease_s))


async def finish(
    backend: Backend,
    job: JobRecord,
    kind: OutcomeKind = OutcomeKind.SUCCEEDED,
    *,
    delivery: int | None = None,
    result: bytes | None = None,
    error: ErrorInfo | None = None,
    retry_delay_s: float = 0.0,
) -> FinishResult:
    outcome = Outcome(
        id=job.id,
        delivery=job.delivery if delivery is None else delivery,
        kind=kind,
        result=result,
        error=error,
        retry_delay_s=retry_delay_s,
    )
    return await backend.finish(FinishParams(outcomes=[outcome]))


def at(seconds: float) -> object:
    """Compare a time on the backend's clock: equal to the millisecond.

    ``pytest.approx``'s default relative tolerance is useless for epoch times
    (1e-6 of 1.7e9 s is half an hour), so the tolerance here is absolute.
    """
    return pytest.approx(seconds, rel=0, abs=1e-3)
