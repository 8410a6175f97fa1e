"""Values to script arguments and job hashes back to records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from offload.backends.base import EnqueueParams
from offload.records import FAIR_STEP_S, ErrorInfo, JobRecord
from offload.states import JobState

encode = msgspec.json.encode
_decode_error = msgspec.json.Decoder(ErrorInfo).decode
_decode_meta = msgspec.json.Decoder(dict[str, Any]).decode


def _s(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _f(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def opt(value: str | None) -> str:
    """Optional strings: '' is None, anything else travels behind an 's'."""
    return "" if value is None else "s" + value


def num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def record(v: Sequence[Any]) -> JobRecord:
    """A job hash, read with HMGET in prelude.lua's FIELDS order."""
    return JobRecord(
        id=v[0].decode(), task=v[1].decode(), queue=v[2].decode(), state=JobState(v[3].decode()),
        payload=v[4], priority=int(v[5]), attempt=int(v[6]), max_attempts=int(v[7]),
        delivery=int(v[8]), crashes=int(v[9]), run_at=float(v[10]), lease_until=_f(v[11]),
        lease_s=_f(v[12]), timeout_s=_f(v[13]), worker=_s(v[14]), progress=float(v[15]),
        progress_message=_s(v[16]), result=v[17],
        error=None if v[18] is None else _decode_error(v[18]), created_at=float(v[19]),
        started_at=_f(v[20]), finished_at=_f(v[21]), key=_s(v[22]), batch=_s(v[23]),
        owner=_s(v[24]), meta={} if v[25] is None else _decode_meta(v[25]),
    )  # fmt: skip


def records(reply: Any) -> list[JobRecord]:
    return [record(v) for v in reply]


_FAIR_STEP = num(FAIR_STEP_S)


def enqueue_args(params: EnqueueParams) -> list[Any]:
    args: list[Any] = [len(params.jobs)]
    for j in params.jobs:
        args += (
            j.id, j.task, j.queue, j.payload, j.priority, j.max_attempts, num(j.delay_s),
            num(j.run_at), num(j.lease_s), num(j.timeout_s), opt(j.key), opt(j.batch),
            opt(j.owner), encode(j.meta) if j.meta else "", _FAIR_STEP if j.fair else "",
        )  # fmt: skip
    return args
