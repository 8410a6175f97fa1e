"""Chains in the worker: store the next step of a job that succeeded, then acknowledge it.

The next step's id is derived from the finished job's id, so storing it twice
(the worker died before its acknowledgement, and the job ran again) is refused
as a duplicate: each step runs once per success of the one before.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from msgspec.structs import replace as replace_struct

from offload.app import Offload
from offload.backends.base import BackendError, EnqueueParams, Outcome, OutcomeKind
from offload.ids import derived_id, id_time_ms
from offload.records import JobRecord, NewJob
from offload.task import CHAIN_META_KEY, job_from_step
from offload.worker import outcomes

log = logging.getLogger("offload.worker")


def next_step(job: JobRecord, result: bytes) -> NewJob | None:
    steps = job.meta.get(CHAIN_META_KEY)
    if not steps:
        return None
    meta: dict[str, Any] = {"chained_from": job.id}
    if steps[1:]:
        meta[CHAIN_META_KEY] = steps[1:]
    return job_from_step(
        steps[0], msgspec.json.decode(result),
        job_id=derived_id(id_time_ms(job.id), f"{job.id}\0next"), owner=job.owner, meta=meta,
    )  # fmt: skip


async def hand_on(app: Offload, job: JobRecord, outcome: Outcome) -> Outcome:
    """Outcome hook: a chain's next step is stored before the success that triggers it."""
    if outcome.kind is not OutcomeKind.SUCCEEDED or CHAIN_META_KEY not in job.meta:
        return outcome
    try:
        successor = next_step(job, outcome.result or b"null")
        if successor is not None:
            if successor.queue in app.fair_queues:  # the next step takes its owner's turn
                successor = replace_struct(successor, fair=True)
            await app.backend.enqueue(EnqueueParams(jobs=[successor]))
    except ValueError:
        pass  # stored by an earlier run of this job, whose acknowledgement was lost
    except BackendError as exc:
        log.error("job %s: cannot store the next step of its chain (%s)", job.id, exc)
        task = app.tasks.get(job.task)
        failure = outcomes.Failure(outcomes.error_info(exc, with_traceback=False), True)
        return outcomes.failed(job, failure, task.defaults.backoff if task else None)
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError, TypeError) as exc:
        log.error("job %s: its chain's next step is unreadable (%s)", job.id, exc)
    return outcome
