"""Jobs as plain JSON-able dicts, for the CLI and the HTTP API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from offload.records import JobRecord

if TYPE_CHECKING:
    from offload.task import Task

#: What a secret argument or result reads as wherever a job is shown or told of.
REDACTED = "[redacted]"


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


def _redacted(task: Task[Any, Any] | None, args: Any, kwargs: Any) -> tuple[Any, Any]:
    """``args`` and ``kwargs`` with the task's secret parameters hidden."""
    if task is None or not task.defaults.secret:
        return args, kwargs
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return args, kwargs
    secret = set(task.defaults.secret)
    known = task.codec.signature.parameters
    params = list(known.values())
    shown = []
    for index, value in enumerate(args):
        if index < len(params) and params[index].kind not in (
            params[index].VAR_POSITIONAL, params[index].VAR_KEYWORD):  # fmt: skip
            name = params[index].name
        else:
            name = next((p.name for p in params if p.kind is p.VAR_POSITIONAL), "")
        shown.append(REDACTED if name in secret else value)
    var_keyword = next((p.name for p in params if p.kind is p.VAR_KEYWORD), None)
    named = {k: REDACTED if k in secret or (var_keyword in secret and k not in known) else v
             for k, v in kwargs.items()}  # fmt: skip
    return shown, named


#: A secret value shorter than this is not looked for in messages (it would hide common words).
MIN_SCRUBBED_CHARS = 4


def _scrubber(args: Any, kwargs: Any, shown_args: Any, shown_kwargs: Any
              ) -> Callable[[str | None], str | None]:  # fmt: skip
    """Hides the secret arguments' values where a task repeated them: an error message, a
    traceback, a progress message."""
    hidden: list[str] = []
    if isinstance(args, list) and isinstance(shown_args, list):
        hidden += [str(a) for a, s in zip(args, shown_args, strict=False) if s == REDACTED]
    if isinstance(kwargs, dict) and isinstance(shown_kwargs, dict):
        hidden += [str(v) for k, v in kwargs.items() if shown_kwargs.get(k) == REDACTED]
    hidden = sorted({h for h in hidden if len(h) >= MIN_SCRUBBED_CHARS}, key=len, reverse=True)

    def scrub(text: str | None) -> str | None:
        if text is None or not hidden:
            return text
        for value in hidden:
            text = text.replace(value, REDACTED)
        return text

    return scrub


def job_dict(
    record: JobRecord, *, with_traceback: bool = True, task: Task[Any, Any] | None = None
) -> dict[str, Any]:
    """A job as JSON-able data; with its ``task``, the arguments and result it marks
    secret read ``REDACTED``."""
    payload = _json_or_raw(record.payload)
    args, kwargs = (
        (payload[0], payload[1])
        if isinstance(payload, list) and len(payload) == 2
        else (payload, {})
    )
    shown_args, shown_kwargs = _redacted(task, args, kwargs)
    scrub = _scrubber(args, kwargs, shown_args, shown_kwargs)
    args, kwargs = shown_args, shown_kwargs
    secret_result = task is not None and task.defaults.secret_result
    error: dict[str, str | None] | None = None
    if record.error is not None:
        error = {"type": record.error.type, "message": scrub(record.error.message)}
        if with_traceback:
            error["traceback"] = scrub(record.error.traceback)
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
        "progress_message": scrub(record.progress_message),
        "result": REDACTED
        if secret_result and record.result is not None
        else _json_or_raw(record.result),
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
                else {"type": a.error.type, "message": scrub(a.error.message)},
            }
            for a in record.attempts
        ],
    }
