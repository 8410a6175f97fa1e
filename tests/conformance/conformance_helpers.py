"""Small helpers shared by the conformance tests: build jobs and call the seam briefly."""

from __future__ import annotations

from collections.abc import Iterable

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
