"""Plans for what a person or the dashboard does beside the job lifecycle: deleting jobs,
publishing events no job step carries, and the worker registry."""

from __future__ import annotations

import logging

import msgspec

from offload.backends.base import IdsParams, PublishParams, WorkerBeatParams
from offload.backends.event_wire import encode_events
from offload.backends.redis_codec import json_arg, num, text
from offload.backends.redis_keys import Keyspace
from offload.backends.redis_plans import Plan, Raw, Script
from offload.backends.values import check_span
from offload.records import CONTROL_KINDS, WorkerInfo

log = logging.getLogger("offload.redis")
#: A registry entry: the store's last_seen, then the worker's own description.
_decode_entry = msgspec.json.Decoder(tuple[float, WorkerInfo]).decode


def plan_delete(params: IdsParams) -> Plan[list[str]]:
    ids = list(dict.fromkeys(params.ids))  # once each, in the order given
    if not ids:
        return []
    gone = yield Script("delete", [text(i, i, "id") for i in ids])
    return [i.decode() for i in gone]


def plan_publish(ks: Keyspace, params: PublishParams) -> Plan[None]:
    """Every event on the full channel, and the control kinds on theirs as well (as the
    scripts send them): a worker hears a queue paused on the control channel alone."""
    if params.events:
        yield Raw(("PUBLISH", ks.events, encode_events(params.events)))
        control = [e for e in params.events if e.kind in CONTROL_KINDS]
        if control:
            yield Raw(("PUBLISH", ks.control, encode_events(control)))
    return None


def plan_beat_worker(params: WorkerBeatParams) -> Plan[None]:
    worker = params.worker
    check_span(worker.id, "worker ttl_s", params.ttl_s)
    info = json_arg(worker, worker.id, "worker description")
    yield Script("beat_worker", [text(worker.id, worker.id, "worker id"), info, num(params.ttl_s)])
    return None


def plan_remove_worker(params: IdsParams) -> Plan[None]:
    if params.ids:
        yield Script("remove_worker", [text(i, i, "worker id") for i in params.ids])
    return None


def plan_workers() -> Plan[list[WorkerInfo]]:
    out = []
    for entry in (yield Script("workers", [])):
        if entry is None:  # timed but not described (edited by hand): not listed
            continue
        try:
            last_seen, info = _decode_entry(entry)
        except msgspec.DecodeError as exc:  # written by another version or by hand
            log.warning("a worker registry entry does not decode (%s); left out", exc)
            continue
        out.append(msgspec.structs.replace(info, last_seen=last_seen))
    out.sort(key=lambda w: w.id)
    return out
