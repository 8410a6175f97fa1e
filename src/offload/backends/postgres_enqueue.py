"""PostgreSQL plans that store new jobs: enqueue, and a finish with its follow-ups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from offload.backends.base import BackendError, EnqueueParams, FinishParams, FinishResult
from offload.backends.postgres_endings import follow_ups_column, plan_open_batch
from offload.backends.postgres_plans import Plan, Statement, Statements
from offload.backends.rows import job_from_row
from offload.backends.values import check_new_jobs, check_outcomes, storable_error, storable_meta
from offload.records import ENQUEUE_COUNTS_TTL_S, FAIR_STEP_S, MAX_ATTEMPTS_KEPT, JobRecord, NewJob

_encode = msgspec.json.encode
#: Rounds an enqueue tries while its unique keys keep changing hands.
ENQUEUE_ROUNDS = 10


def _job_arrays(jobs: Sequence[NewJob]) -> dict[str, Any]:
    return {
        "ids": [j.id for j in jobs], "tasks": [j.task for j in jobs],
        "queues": [j.queue for j in jobs], "payloads": [j.payload for j in jobs],
        "priorities": [j.priority for j in jobs],
        "max_attempts": [j.max_attempts for j in jobs],
        "run_ats": [j.run_at for j in jobs], "delays": [j.delay_s for j in jobs],
        "lease_ss": [j.lease_s for j in jobs], "timeout_ss": [j.timeout_s for j in jobs],
        "keys": [j.key for j in jobs], "batches": [j.batch for j in jobs],
        "owners": [j.owner for j in jobs],
        "metas": [_encode(j.meta).decode() if j.meta else None for j in jobs],
        "follow_ups": [follow_ups_column(j) if j.follow_ups else None for j in jobs],
        "counts_ttl_s": ENQUEUE_COUNTS_TTL_S,
    }  # fmt: skip


def _insert(st: Statements, jobs: Sequence[NewJob]) -> Statement:
    """One statement inserting ``jobs``; a held unique key skips its job."""
    if len(jobs) == 1 and not jobs[0].fair:  # scalar parameters: cheaper than fourteen arrays
        j = jobs[0]
        return (
            st["enqueue_one"],
            {
                "id": j.id, "task": j.task, "queue": j.queue, "payload": j.payload,
                "priority": j.priority, "max_attempts": j.max_attempts, "run_at_s": j.run_at,
                "delay_s": j.delay_s, "lease_s": j.lease_s, "timeout_s": j.timeout_s,
                "key": j.key, "batch": j.batch, "owner": j.owner,
                "meta": _encode(j.meta).decode() if j.meta else None, "channel": st.channel,
                "follow_ups": follow_ups_column(j) if j.follow_ups else None,
                "counts_ttl_s": ENQUEUE_COUNTS_TTL_S, **st.pushing,
            },
        )  # fmt: skip
    args = {"channel": st.channel, **st.pushing, **_job_arrays(jobs)}
    if any(j.fair for j in jobs):  # only then the statement that hands out turns
        args |= {"fairs": [j.fair for j in jobs], "step": FAIR_STEP_S}
        return (st["enqueue_fair"], args)
    return (st["enqueue"], args)


def enqueue_is_atomic_alone(params: EnqueueParams) -> bool:
    """True when the enqueue is one statement whatever happens: no transaction needed.
    A job with a unique key may take a second statement (its holder) and more."""
    if params.batch is not None:  # the batch is a second statement
        return False
    return len(params.jobs) <= 1 or all(j.key is None for j in params.jobs)


def plan_enqueue(st: Statements, params: EnqueueParams) -> Plan[list[JobRecord]]:
    """Insert; a job skipped for its key returns the key's live holder. A holder that
    ended between the two statements frees the key: the job is inserted again, so the
    call never fails halfway (run it in one transaction unless ``enqueue_is_atomic_alone``).
    """
    jobs = list(params.jobs)
    if not jobs:
        return []
    check_new_jobs(jobs, nul_ok=False)
    stored: dict[str, JobRecord] = {}
    inserted: list[JobRecord] = []
    pending = jobs
    for _ in range(ENQUEUE_ROUNDS):
        for record in map(job_from_row, (yield _insert(st, pending))):
            stored[record.id] = record
            inserted.append(record)
        skipped = [j for j in pending if j.id not in stored]
        if not skipped:
            break
        if any(j.key is None for j in skipped):
            raise BackendError("enqueue stored fewer jobs than asked and none held their key")
        held = yield (st["live_keys"], {"keys": [j.key for j in skipped]})
        holders = {record.key: record for record in map(job_from_row, held)}
        for j in skipped:
            if j.key in holders:
                stored[j.id] = holders[j.key]
        pending = [j for j in skipped if j.key not in holders]  # the holder ended meanwhile
        if not pending:
            break
    else:
        raise BackendError("enqueue: the unique keys kept changing hands; try again")
    if params.batch is not None:
        yield from plan_open_batch(st, params.batch, inserted)
    return [stored[j.id] for j in jobs]


def plan_finish(st: Statements, params: FinishParams) -> Plan[FinishResult]:
    """Run it in one transaction when an outcome has follow-ups: they are stored with it,
    their ENQUEUED events after the finish's own."""
    outcomes = list(params.outcomes)
    check_outcomes(outcomes, nul_ok=False)
    rows = yield (
        st["finish"],
        {
            "ids": [o.id for o in outcomes], "deliveries": [o.delivery for o in outcomes],
            "kinds": [o.kind.value for o in outcomes], "results": [o.result for o in outcomes],
            "errors": [None if o.error is None else storable_error(o.error, nul_ok=False).decode()
                       for o in outcomes],
            "delays": [o.retry_delay_s for o in outcomes], "channel": st.channel,
            **st.pushing, "kept": MAX_ATTEMPTS_KEPT,
            "metas": [None if o.meta is None else storable_meta(o.meta, nul_ok=False).decode()
                      for o in outcomes],
        },
    )  # fmt: skip
    accepted = {r[0] for r in rows}
    follow_ups = [new for o in outcomes if o.id in accepted for new in o.follow_ups]
    if follow_ups:  # only for the outcomes taken; an id already stored is skipped
        args = {"channel": st.channel, **st.pushing, **_job_arrays(follow_ups)}
        yield (st["enqueue_follow_ups"], args)
    return FinishResult(rejected=[o.id for o in outcomes if o.id not in accepted])
