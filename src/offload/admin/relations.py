"""A job's relatives, for its page: the notices it sent, the jobs it set off when it
ended, the chain step before and after it, and its batch.

A follow-up's id is derived from its parent's id and the option that asked for it
(``task.follow_up``), so every relative is found by one read of the ids it could have:
no scan, no index, and nothing extra stored when the job was enqueued.
"""

from __future__ import annotations

import msgspec

from offload.admin.operations import batch, get
from offload.backends.base import IdsParams
from offload.batches import CALLBACK_META_KEY, BatchStatus
from offload.ids import derived_id, id_time_ms
from offload.notices.specs import ON
from offload.ops import Op
from offload.records import JobRecord
from offload.task import END_OPTIONS

#: Notices one job may ask for at most (the HTTP API's own limit).
MAX_NOTICES = 10
_NOTICE_OPTIONS = [f"notify:{i}:{on}" for i in range(MAX_NOTICES) for on in ON]


class Related(msgspec.Struct, frozen=True, kw_only=True):
    notices: list[JobRecord]
    follow_ups: list[JobRecord]
    chain_previous: str | None
    chain_next: JobRecord | None
    batch: BatchStatus | None
    #: This job is the callback of that batch.
    callback_of: str | None


def _child(parent_id: str, option: str) -> str:
    return derived_id(id_time_ms(parent_id), f"{parent_id}\0{option}")


def related(job_id: str, owner: str | None) -> Op[Related]:
    """``job_id``'s relatives that ``owner`` may see (None: every owner's)."""
    job = yield from get(job_id, owner)
    options = [*_NOTICE_OPTIONS, *END_OPTIONS, "next"]
    ids = {_child(job.id, option): option for option in options}
    found: list[JobRecord] = yield ("get", IdsParams(ids=list(ids)))
    mine = [r for r in found if owner is None or r.owner == owner]
    by_option = {ids[r.id]: r for r in mine if r.id in ids}
    status = None
    if job.batch is not None:
        try:
            status = yield from batch(job.batch, owner)
        except LookupError:
            status = None
    previous = job.meta.get("chained_from")
    callback_of = job.meta.get(CALLBACK_META_KEY)
    return Related(
        notices=[r for o, r in by_option.items() if o.startswith("notify:")],
        follow_ups=[r for o, r in by_option.items() if o in END_OPTIONS],
        chain_previous=previous if isinstance(previous, str) else None,
        chain_next=by_option.get("next"),
        batch=status,
        callback_of=callback_of if isinstance(callback_of, str) else None,
    )
