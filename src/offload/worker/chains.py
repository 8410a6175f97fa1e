"""Chains in the worker: the next step of a job that succeeded, ready to store.

The next step's id is derived from the finished job's id, so storing it twice
(the worker died before its acknowledgement, and the job ran again) is refused
as a duplicate: each step runs once per success of the one before.
"""

from __future__ import annotations

from typing import Any

import msgspec

from offload.app import Offload
from offload.ids import derived_id, id_time_ms
from offload.records import JobRecord, NewJob
from offload.task import CHAIN_META_KEY

_decode_step_payload = msgspec.json.Decoder(tuple[list[Any], dict[str, Any]]).decode


def next_step(app: Offload, job: JobRecord, result: bytes) -> NewJob | None:
    steps = job.meta.get(CHAIN_META_KEY)
    if not steps:
        return None
    step, rest = steps[0], steps[1:]
    args, kwargs = _decode_step_payload(step["payload"])
    payload = msgspec.json.encode(([msgspec.json.decode(result), *args], kwargs))
    task = app.tasks.get(step["task"])
    meta: dict[str, Any] = {"chained_from": job.id}
    if rest:
        meta[CHAIN_META_KEY] = rest
    return NewJob(
        id=derived_id(id_time_ms(job.id), f"{job.id}\0next"),
        task=step["task"],
        queue=step["queue"],
        payload=payload,
        priority=step["priority"],
        max_attempts=task.defaults.max_attempts if task else step.get("max_attempts", 1),
        lease_s=task.defaults.lease_s if task else None,
        timeout_s=task.defaults.timeout_s if task else None,
        owner=job.owner,
        meta=meta,
    )
