"""Jobs as plain JSON-able dicts, for the CLI and the HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from offload.records import JobRecord


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _json_or_raw(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return {"undecodable": data.decode("utf-8", "replace")}


def job_dict(record: JobRecord, *, with_traceback: bool = True) -> dict[str, Any]:
    payload = _json_or_raw(record.payload)
    args, kwargs = (
        (payload[0], payload[1])
        if isinstance(payload, list) and len(payload) == 2
        else (payload, {})
    )
    error: dict[str, str | None] | None = None
    if record.error is not None:
        error = {"type": record.error.type, "message": record.error.message}
        if with_traceback:
            error["traceback"] = record.error.traceback
    return {
        "id": record.id,
        "task": record.task,
        "queue": record.queue,
        "state": record.state.value,
        "args": args,
        "kwargs": kwargs,
        "priority": record.priority,
        "attempt": record.attempt,
        "max_attempts": record.max_attempts,
        "progress": record.progress,
        "progress_message": record.progress_message,
        "result": _json_or_raw(record.result),
        "error": error,
        "key": record.key,
        "batch": record.batch,
        "owner": record.owner,
        "meta": record.meta,
        "worker": record.worker,
        "run_at": iso(record.run_at),
        "created_at": iso(record.created_at),
        "started_at": iso(record.started_at),
        "finished_at": iso(record.finished_at),
        "lease_until": iso(record.lease_until),
        "attempts": [
            {
                "number": a.number,
                "worker": a.worker,
                "started_at": iso(a.started_at),
                "ended_at": iso(a.ended_at),
                "outcome": a.outcome.value,
                "error": None
                if a.error is None
                else {"type": a.error.type, "message": a.error.message},
            }
            for a in record.attempts
        ],
    }
