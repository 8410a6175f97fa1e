"""Chains: a job that succeeded hands its chain's next step to the store with its own
acknowledgement (an after-run hook, see hooks.py).

The next step rides on the success as an ``Outcome.follow_ups`` entry: the store
inserts it in the same atomic step as the fenced finish, and only if it accepts
that finish, so a step cancelled while it ran, or whose lease was reaped, hands
nothing on. Its id is derived from the finished job's id, so a job that ran again
(its acknowledgement was lost) cannot store the next step twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec.structs import replace as replace_struct

from offload.backends.base import Outcome, OutcomeKind
from offload.ids import derived_id, id_time_ms
from offload.records import ErrorInfo, JobRecord, NewJob
from offload.task import CHAIN_META_KEY, job_from_step

if TYPE_CHECKING:
    from offload.app import Offload
    from offload.hooks import Hooks

log = logging.getLogger("offload.chains")


def next_step(job: JobRecord, result: bytes) -> NewJob | None:
    """The chain's next step, or None; raises ``msgspec.ValidationError`` (or DecodeError)
    when the steps in ``meta`` are not what ``chain_step`` writes."""
    steps = job.meta.get(CHAIN_META_KEY)
    if not steps:
        return None
    if not isinstance(steps, list):
        raise msgspec.ValidationError(f"the chain must be a list of steps, got {steps!r:.200}")
    meta: dict[str, Any] = {"chained_from": job.id}
    if steps[1:]:
        meta[CHAIN_META_KEY] = steps[1:]
    return job_from_step(
        steps[0], msgspec.json.decode(result),
        job_id=derived_id(id_time_ms(job.id), f"{job.id}\0next"), owner=job.owner, meta=meta,
    )  # fmt: skip


async def hand_on(app: Offload, job: JobRecord, outcome: Outcome) -> Outcome:
    """Outcome hook: a success that continues a chain carries the next step as a follow-up.

    A chain whose next step cannot be read (written by hand or by another version) fails
    the job, not retryable, with the reason logged: the chain cannot go on, and a success
    that silently drops the rest of it would hide that."""
    if outcome.kind is not OutcomeKind.SUCCEEDED or CHAIN_META_KEY not in job.meta:
        return outcome
    try:
        successor = next_step(job, outcome.result or b"null")
    except (msgspec.DecodeError, KeyError, TypeError) as exc:
        log.error("job %s (%s): its chain's next step is unreadable, the chain ends here: %s",
                  job.id, job.task, exc)  # fmt: skip
        error = ErrorInfo(type="ChainStepUnreadable",
                          message=f"the chain's next step is unreadable: {exc}")  # fmt: skip
        return Outcome(id=job.id, delivery=job.delivery, kind=OutcomeKind.DEAD, error=error)
    if successor is None:
        return outcome
    if successor.queue in app.fair_queues:  # the next step takes its owner's turn
        successor = replace_struct(successor, fair=True)
    return replace_struct(outcome, follow_ups=[*outcome.follow_ups, successor])


def register(hooks: Hooks) -> None:
    hooks.after_run.append(hand_on)
