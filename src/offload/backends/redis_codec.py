"""Values to script arguments, checked before any script runs, and job hashes back to
records, decoded so that one unreadable hash never makes a read raise."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

from offload.backends.base import ValueRejected
from offload.backends.values import MAX_INT
from offload.records import FAIR_STEP_S, Attempt, BatchOpen, ErrorInfo, FollowUp, JobRecord, NewJob
from offload.states import JobState

encode = msgspec.json.encode
_decode_error = msgspec.json.Decoder(ErrorInfo).decode
_decode_meta = msgspec.json.Decoder(dict[str, Any]).decode
_decode_attempts = msgspec.json.Decoder(list[Attempt]).decode
_decode_entries = msgspec.json.Decoder(list[msgspec.Raw]).decode
_decode_attempt = msgspec.json.Decoder(Attempt).decode
#: 9999-12-31T23:59:59Z: the latest time every store (and ``datetime``) can hold.
MAX_TIME_S = 253402300799.0
#: About 317 years: a delay, lease or timeout beyond it is a mistake, and ``now`` plus it
#: stays below MAX_TIME_S.
MAX_DURATION_S = 1e10

V = TypeVar("V")


def _refuse(job: str, field: str, why: str) -> ValueRejected:
    return ValueRejected(f"job {job!r}: Redis cannot store its {field}: {why}")


def text(value: str, job: str, field: str) -> bytes:
    """UTF-8 or ValueRejected naming the job and field (a lone surrogate, say)."""
    try:
        return value.encode()
    except UnicodeEncodeError as exc:
        raise _refuse(job, field, f"{value[exc.start]!r} at {exc.start} is not UTF-8") from None


def escaped(value: str) -> str:
    """Text that encodes, lone surrogates written as ``\\udcff``: for error messages and
    progress notes, where the escape loses nothing anyone needs."""
    return value.encode("utf-8", "backslashreplace").decode()


def error_json(error: ErrorInfo) -> bytes:
    try:
        return encode(error)
    except UnicodeEncodeError:
        tb = None if error.traceback is None else escaped(error.traceback)
        return encode(
            ErrorInfo(type=escaped(error.type), message=escaped(error.message), traceback=tb)
        )


def json_arg(value: Any, job: str, field: str) -> bytes:
    try:
        return encode(value)
    except (UnicodeEncodeError, TypeError, OverflowError, ValueError, RecursionError) as exc:
        raise _refuse(job, field, f"{exc}") from None


def opt(value: str | None, job: str = "", field: str = "value") -> bytes:
    """Optional strings: '' is None, anything else travels behind an 's'."""
    return b"" if value is None else b"s" + text(value, job, field)


def num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def when(value: float | None, job: str, field: str) -> str:
    """An absolute time on the store's clock, checked: finite and within 0..MAX_TIME_S."""
    if value is not None and not (math.isfinite(value) and 0 <= value <= MAX_TIME_S):
        raise _refuse(job, field, f"{value!r} is not a time between 1970 and 9999")
    return num(value)


def span(value: float | None, job: str, field: str) -> str:
    """A duration in seconds, checked: finite and at most MAX_DURATION_S either way."""
    if value is not None and not (math.isfinite(value) and abs(value) <= MAX_DURATION_S):
        raise _refuse(job, field, f"{value!r} s is not a duration of at most {MAX_DURATION_S:g} s")
    return num(value)


# -- job hashes to records -----------------------------------------------------------


def _text(raw: bytes) -> str:
    return raw.decode()


def _state(raw: bytes) -> JobState:
    return JobState(raw.decode())


#: How many fields prelude.lua's read() returns for a job hash; one more says why the key
#: holds no hash (a string another tool wrote there): a dead job, every other field unset.
_FIELDS = 27


def record(v: Sequence[Any]) -> JobRecord:
    """A job hash, read with HMGET in prelude.lua's FIELDS order. A field that is missing
    or does not decode gets a safe default and is named in ``unreadable``: a hash written
    by another version or by hand must not make a claim, get or query raise."""
    if len(v) > _FIELDS:  # no hash at all: its id, queue, state dead and why are all there is
        damaged = record(v[:_FIELDS])
        damaged.unreadable = bytes(v[_FIELDS]).decode(errors="backslashreplace")
        return damaged
    problems: list[str] = []

    def f(i: int, name: str, convert: Callable[[bytes], V], default: V, need: bool = False) -> V:
        raw = v[i]
        if raw is None:
            if need:
                problems.append(f"{name}: missing")
            return default
        try:
            return convert(raw)
        except Exception as exc:  # whatever the garbage, the read goes on
            problems.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
            return default

    def opt_f(raw: bytes) -> float | None:
        return float(raw)

    def opt_s(raw: bytes) -> str | None:
        return raw.decode()

    rec = JobRecord(
        id=f(0, "id", _text, "", need=True), task=f(1, "task", _text, "", need=True),
        queue=f(2, "queue", _text, "", need=True),
        state=f(3, "state", _state, JobState.DEAD, need=True),
        payload=f(4, "payload", bytes, b"null", need=True),
        priority=f(5, "priority", int, 0, need=True), attempt=f(6, "attempt", int, 0, need=True),
        max_attempts=f(7, "max_attempts", int, 1, need=True),
        delivery=f(8, "delivery", int, 0, need=True), crashes=f(9, "crashes", int, 0, need=True),
        run_at=f(10, "run_at", float, 0.0, need=True),
        lease_until=f(11, "lease_until", opt_f, None), lease_s=f(12, "lease_s", opt_f, None),
        timeout_s=f(13, "timeout_s", opt_f, None), worker=f(14, "worker", opt_s, None),
        progress=f(15, "progress", float, 0.0),
        progress_message=f(16, "progress_message", opt_s, None),
        result=v[17], error=f(18, "error", _decode_error, None),
        created_at=f(19, "created_at", float, 0.0, need=True),
        started_at=f(20, "started_at", opt_f, None), finished_at=f(21, "finished_at", opt_f, None),
        key=f(22, "key", opt_s, None), batch=f(23, "batch", opt_s, None),
        owner=f(24, "owner", opt_s, None), meta=f(25, "meta", _decode_meta, {}),
        attempts=[] if v[26] is None else attempts(v[26]),  # absent from older hashes
    )  # fmt: skip
    if problems:
        rec.unreadable = "; ".join(problems)
    return rec


def attempts(raw: bytes) -> list[Attempt]:
    """A job's history, what of it decodes: it is for people, and a job whose history was
    edited by hand (or written by another version) must still run, not be dead-lettered."""
    try:
        return _decode_attempts(raw)
    except msgspec.DecodeError:
        pass
    try:
        entries = _decode_entries(raw)
    except msgspec.DecodeError:  # no JSON list at all: a count or an error read() passed on
        return []
    kept = []
    for entry in entries:
        try:
            kept.append(_decode_attempt(entry))
        except msgspec.DecodeError:
            continue
    return kept


def records(reply: Any) -> list[JobRecord]:
    return [record(v) for v in reply]


# -- jobs to script arguments -----------------------------------------------------------

_FAIR_STEP = num(FAIR_STEP_S)
#: How many values one job takes in enqueue.lua's (and finish.lua's follow-ups') arguments,
#: and in a job blob (endings.lua's JOB_ITEMS).
JOB_STRIDE = 16


def job_args(j: NewJob) -> list[Any]:
    """The JOB_STRIDE values of one new job, every one checked before any script runs; the
    last is its follow-ups' blob ('' for none: a job without any costs nothing more)."""
    i = j.id
    for field, number in (("priority", j.priority), ("max_attempts", j.max_attempts)):
        if not -MAX_INT <= number <= MAX_INT:  # what every store holds (PostgreSQL's int)
            raise ValueRejected(f"job {i!r}: {field} = {number!r} is out of range; nothing was "
                                "stored")  # fmt: skip
    return [
        text(i, i, "id"), text(j.task, i, "task"), text(j.queue, i, "queue"), j.payload,
        j.priority, j.max_attempts, span(j.delay_s, i, "delay_s"), when(j.run_at, i, "run_at"),
        span(j.lease_s, i, "lease_s"), span(j.timeout_s, i, "timeout_s"), opt(j.key, i, "key"),
        opt(j.batch, i, "batch"), opt(j.owner, i, "owner"),
        json_arg(j.meta, i, "meta") if j.meta else "", _FAIR_STEP if j.fair else "",
        follow_ups_blob(j.follow_ups) if j.follow_ups else "",
    ]  # fmt: skip


def enqueue_args(jobs: Sequence[NewJob], batch: BatchOpen | None = None) -> list[Any]:
    """enqueue.lua's arguments: the jobs, then the batch opened with them (or '')."""
    args: list[Any] = [len(jobs)]
    for j in jobs:
        args += job_args(j)
    if batch is None:
        return [*args, "", "", ""]
    callback = batch.callback
    blob = b"" if callback is None else job_blob(callback)
    return [*args, opt(batch.id, batch.id, "batch id"), blob,
            opt(None if callback is None else callback.id)]  # fmt: skip


# -- jobs kept for later: '<length>:<bytes>' items that a script reads with endings.lua's
# items(), any bytes (a payload) included, nothing to decode when a job has none ----------


def _item(value: bytes | str | int) -> bytes:
    raw = value if isinstance(value, bytes) else str(value).encode()
    return b"%d:%s" % (len(raw), raw)


def job_blob(new: NewJob) -> bytes:
    """One job (a batch's callback) as JOB_STRIDE items, checked as job_args checks."""
    return b"".join(_item(v) for v in job_args(new))


def follow_ups_blob(follow_ups: Sequence[FollowUp]) -> bytes:
    """A job's follow-ups: per follow-up, its states joined by commas, then its job's items."""
    out = []
    for f in follow_ups:
        out.append(_item(",".join(JobState(s).value for s in f.on)))
        out.append(job_blob(f.job))
    return b"".join(out)
