"""Rate and concurrency limits, enforced by the worker that is about to start a job.

A job that may not start yet is *deferred*: it goes back to ``scheduled`` for a
while, its attempt not counted, so it never blocks the jobs behind it and never
burns a retry. The limits' state lives in store marks (compare-and-set), so a
limit holds across every worker and machine sharing the store, on any backend.

Rate limits are a token bucket in GCRA form (one number per key: the theoretical
arrival time). A refused job *reserves* the next free slot and sleeps until then,
so a backlog of N jobs costs N deferrals, not N² retries. Concurrency limits keep
the holders (job id and delivery) in the mark; a holder whose job is no longer
running under that delivery (its worker was killed) is dropped the next time the
limit is full, so a crash never leaks a slot.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from offload.backends.base import (
    Backend,
    BackendError,
    IdsParams,
    MarkNamesParams,
    MarkParams,
    Outcome,
    OutcomeKind,
)
from offload.errors import ConfigurationError
from offload.records import JobRecord
from offload.states import JobState
from offload.storeclock import StoreClock

log = logging.getLogger("offload.worker")

#: Where a deferred job keeps why it waits and the rate slots it has reserved.
META_KEY = "limits"
#: How often a compare-and-set may lose to another worker before the job is deferred briefly.
CAS_TRIES = 8
#: How long a job waits when the store could not be asked (or was too contended).
UNSURE_DELAY_S = 1.0

_UNITS_S = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
            "h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}  # fmt: skip
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+?)s?\s*$")

KeyFunction = Callable[..., Any]
_S = TypeVar("_S", bound=msgspec.Struct)


def parse_rate(text: str) -> float:
    """``"10/s"``, ``"100/min"``, ``"5/h"``, ``"1/5s"`` → seconds between two starts."""
    match = _RATE.match(text.lower()) if isinstance(text, str) else None
    if match is None or match.group(3) not in _UNITS_S:
        raise ConfigurationError(
            f"rate must look like '10/s', '100/min', '5/h' or '1/5s', got {text!r}"
        )
    count, per, unit = float(match.group(1)), float(match.group(2) or 1), match.group(3)
    if count <= 0 or per <= 0:
        raise ConfigurationError(f"rate must be positive, got {text!r}")
    return per * _UNITS_S[unit] / count


@dataclass(frozen=True)
class RateLimit:
    """At most ``rate`` starts (``"10/s"``), ``burst`` of them at once, across all workers.

    ``key(*args, **kwargs)`` splits the limit by a value computed from the job's
    arguments (an API host, a customer); ``name`` shares one limit between tasks.
    """

    rate: str
    key: KeyFunction | None = None
    burst: int = 1
    name: str | None = None
    interval_s: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval_s", parse_rate(self.rate))
        if not isinstance(self.burst, int) or isinstance(self.burst, bool) or self.burst < 1:
            raise ConfigurationError(f"burst must be an int >= 1, got {self.burst!r}")
        _check_common(self.key, self.name)

    def describe(self) -> str:
        return f"rate limit {self.name!r} ({self.rate})"


@dataclass(frozen=True)
class ConcurrencyLimit:
    """At most ``max_running`` jobs running at once across all workers (per ``key``).

    A job that finds the limit full looks again after about ``retry_s``.
    """

    max_running: int
    key: KeyFunction | None = None
    name: str | None = None
    retry_s: float = 1.0

    def __post_init__(self) -> None:
        if (
            not isinstance(self.max_running, int)
            or isinstance(self.max_running, bool)
            or self.max_running < 1
        ):
            raise ConfigurationError(f"max_running must be an int >= 1, got {self.max_running!r}")
        if not 0 < self.retry_s <= 3600:  # also refuses NaN
            raise ConfigurationError(f"retry_s must be a number in (0, 3600], got {self.retry_s!r}")
        _check_common(self.key, self.name)

    def describe(self) -> str:
        return f"concurrency limit {self.name!r} ({self.max_running} at once)"


Limit = RateLimit | ConcurrencyLimit


def _check_common(key: KeyFunction | None, name: str | None) -> None:
    if key is not None and not callable(key):
        raise ConfigurationError(
            f"a limit's key must be a function of the job's arguments, got {key!r}"
        )
    if name is not None and (not isinstance(name, str) or not name or ":" in name):
        raise ConfigurationError(
            f"a limit's name must be a non-empty string without ':', got {name!r}"
        )


def named_limits(limits: Sequence[Limit], task_name: str) -> tuple[Limit, ...]:
    """Give unnamed limits the task's name: each task then has its own, unless shared by name."""
    out: list[Limit] = []
    for limit in limits:
        if not isinstance(limit, RateLimit | ConcurrencyLimit):
            raise ConfigurationError(
                f"limits take RateLimit(...) or ConcurrencyLimit(...), got {limit!r}"
            )
        out.append(limit if limit.name is not None else _renamed(limit, task_name))
    return tuple(out)


def _renamed(limit: Limit, name: str) -> Limit:
    if isinstance(limit, RateLimit):
        return RateLimit(limit.rate, key=limit.key, burst=limit.burst, name=name)
    return ConcurrencyLimit(limit.max_running, key=limit.key, name=name, retry_s=limit.retry_s)


# -- pure decisions ---------------------------------------------------------------------


def gcra(tat: float, now: float, interval_s: float, burst: int) -> tuple[float, float]:
    """One request against a bucket: ``(new_tat, start_at)``, where ``start_at`` is now when a
    token is free, else the moment the reserved one will be."""
    theoretical = max(tat, now)
    start_at = max(now, theoretical - (burst - 1) * interval_s)
    return theoretical + interval_s, start_at


def limit_key(limit: Limit, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    if limit.key is None:
        return ""
    value = limit.key(*args, **kwargs)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(
            f"the key function of {limit.describe()} must return a str or an int, got {value!r}"
        )
    return str(value)


class _Holders(msgspec.Struct):
    holders: dict[str, int] = {}


class _Bucket(msgspec.Struct):
    tat: float = 0.0


# -- the store side -----------------------------------------------------------------------

#: A reserved rate slot still counts when its job is claimed up to this late (or one
#: interval, if longer): over any window W a limit then allows at most
#: ``rate * (W + PREPAID_GRACE_S) + burst`` starts, and a slightly late claim is not
#: sent to the back of the line.
PREPAID_GRACE_S = 0.1


@dataclass
class Admission:
    """What ``Limiter.admit`` decided: start (and later ``release``), or wait (``deferral``,
    with ``not_before``, the app-clock time it waits for)."""

    deferral: Outcome | None = None
    not_before: float | None = None
    held: list[str] = field(default_factory=list)


KeyedLimit = tuple[Limit, str]


def keyed_limits(
    limits: Sequence[Limit], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> list[KeyedLimit]:
    """Each limit with its key for this job; raises what a key function raised (the job's
    fault, not the store's)."""
    return [(limit, limit_key(limit, args, kwargs)) for limit in limits]


class Limiter:
    """``clock`` is this worker's clock (``Admission.not_before`` is on it); every decision
    about a bucket is made on the store's clock, which all workers share."""

    def __init__(self, backend: Backend, clock: Callable[[], float]) -> None:
        self.backend = backend
        self.clock = clock
        self.store_clock = StoreClock(clock)

    async def admit(self, job: JobRecord, keyed: Sequence[KeyedLimit]) -> Admission:
        """Take a slot in every concurrency limit, then a token from every rate limit. A full
        concurrency limit gives back what was taken and defers the job; rate limits all
        reserve, and the job waits once, for the latest of its slots."""
        admission = Admission()
        try:
            for limit, key in keyed:
                if isinstance(limit, ConcurrencyLimit):
                    name = f"limit:running:{limit.name}:{key}"
                    if not await self._take_slot(name, job, limit.max_running):
                        await self.release(job, admission)
                        delay_s = limit.retry_s * random.uniform(0.8, 1.2)
                        return self._defer(job, admission, delay_s, _waiting(limit, key), {})
                    admission.held.append(name)
            waits: list[tuple[float, RateLimit, str]] = []
            for limit, key in keyed:
                if isinstance(limit, RateLimit):
                    start_at = await self._take_token(job, limit, key)
                    if start_at is not None:
                        waits.append((start_at, limit, key))
            if waits:
                await self.release(job, admission)
                start_at, limit, key = max(waits, key=lambda w: w[0])
                # Every reservation is kept for the one start: a limit whose slot came
                # earlier is only under-used, never exceeded.
                prepaid = {
                    str(lim.name): [start_at, job.delivery + 1]
                    for lim, _ in keyed
                    if isinstance(lim, RateLimit)
                }
                delay_s = start_at - await self.store_clock.now(self.backend)
                return self._defer(job, admission, delay_s, _waiting(limit, key), prepaid)
        except (BackendError, _Contended) as exc:
            await self.release(job, admission)
            reason = f"the limits could not be checked ({exc}); looking again shortly"
            return self._defer(job, admission, UNSURE_DELAY_S, reason, {})
        return admission

    async def release(self, job: JobRecord, admission: Admission) -> None:
        """Give back the concurrency slots an admission took. Best effort: it never raises,
        because a slot whose release is lost is reclaimed once its job is seen not running."""
        names, admission.held = admission.held, []
        for name in names:
            try:
                await self._give_back(name, job)
            except (BackendError, _Contended) as exc:
                log.warning("could not give back %s for job %s (%s); it is reclaimed later",
                            name, job.id, exc)  # fmt: skip

    async def _give_back(self, name: str, job: JobRecord) -> None:
        for _ in range(CAS_TRIES):
            raw, state = await self._read(name, _Holders)
            if state.holders.get(job.id) != job.delivery:
                return
            del state.holders[job.id]
            if await self._write(name, raw, state, ttl_s=_idle_ttl(state)):
                return
        raise _Contended(name)

    # -- concurrency -------------------------------------------------------------------
    async def _take_slot(self, name: str, job: JobRecord, max_running: int) -> bool:
        for _ in range(CAS_TRIES):
            raw, state = await self._read(name, _Holders)
            holders = state.holders
            if holders.get(job.id) == job.delivery:
                return True
            holders.pop(job.id, None)  # an earlier delivery of this very job
            if len(holders) >= max_running:
                holders = await self._alive(holders)
                if len(holders) >= max_running:
                    return False
            holders[job.id] = job.delivery
            if await self._write(name, raw, _Holders(holders=holders), ttl_s=None):
                return True
        raise _Contended(name)

    async def _alive(self, holders: dict[str, int]) -> dict[str, int]:
        records = await self.backend.get(IdsParams(ids=list(holders)))
        return {
            r.id: r.delivery
            for r in records
            if r.state is JobState.RUNNING and holders.get(r.id) == r.delivery
        }

    # -- rate ----------------------------------------------------------------------------
    async def _take_token(self, job: JobRecord, limit: RateLimit, key: str) -> float | None:
        """None when the job may start now; else the start of the slot it has reserved (both
        on the store's clock)."""
        now = await self.store_clock.now(self.backend)
        slot = _prepaid(job, limit)
        grace_s = max(limit.interval_s, PREPAID_GRACE_S)
        if slot is not None and slot - limit.interval_s <= now <= slot + grace_s:
            if now < slot:  # a moment early (the deferral's delay was counted at its flush)
                await asyncio.sleep(slot - now)
            return None  # reserved when it was deferred, and not so late as to bunch up
        name = f"limit:rate:{limit.name}:{key}"
        for _ in range(CAS_TRIES):
            raw, bucket = await self._read(name, _Bucket)
            tat, start_at = gcra(bucket.tat, now, limit.interval_s, limit.burst)
            # Once the store's clock passes tat the bucket is full again, and a missing
            # mark means just that: the mark lives no longer than it matters.
            if await self._write(name, raw, _Bucket(tat=tat), ttl_s=tat - now + EXPIRY_MARGIN_S):
                return None if start_at <= now else start_at
        raise _Contended(name)

    # -- marks -----------------------------------------------------------------------------
    async def _read(self, name: str, kind: type[_S]) -> tuple[str | None, _S]:
        raw = (await self.backend.get_marks(MarkNamesParams(names=[name]))).get(name)
        if raw is None:
            return None, kind()
        try:
            return raw, msgspec.json.decode(raw, type=kind)
        except msgspec.ValidationError:
            return raw, kind()  # a damaged mark resets the limit rather than stopping all jobs

    async def _write(
        self, name: str, raw: str | None, state: msgspec.Struct, *, ttl_s: float | None
    ) -> bool:
        value = msgspec.json.encode(state).decode()
        params = MarkParams(name=name, value=value, expected=raw, ttl_s=ttl_s)
        return await self.backend.set_mark(params)

    # -- deferral ----------------------------------------------------------------------------
    def _defer(
        self,
        job: JobRecord,
        admission: Admission,
        delay_s: float,
        reason: str,
        prepaid: dict[str, Any],
    ) -> Admission:
        meta = dict(job.meta)
        meta[META_KEY] = {"waiting_for": reason, "prepaid": prepaid}
        delay_s = max(0.0, delay_s)
        admission.not_before = self.clock() + delay_s
        admission.deferral = Outcome(
            id=job.id, delivery=job.delivery, kind=OutcomeKind.DEFER, retry_delay_s=delay_s,
            meta=meta,
        )  # fmt: skip
        return admission


def _waiting(limit: Limit, key: str) -> str:
    return f"waiting for {limit.describe()}" + (f", key {key!r}" if key else "")


def _prepaid(job: JobRecord, limit: RateLimit) -> float | None:
    """The slot a deferral reserved for this delivery of the job, if any."""
    note = job.meta.get(META_KEY)
    entry = note.get("prepaid", {}).get(limit.name) if isinstance(note, dict) else None
    if (
        isinstance(entry, list)
        and len(entry) == 2
        and entry[1] == job.delivery
        and isinstance(entry[0], int | float)
    ):
        return float(entry[0])
    return None


#: A limit's mark outlives the moment it stops mattering by this much.
EXPIRY_MARGIN_S = 1.0
#: A concurrency limit with no holder left keeps its mark this long, then it expires.
IDLE_HOLDERS_TTL_S = 60.0


def _idle_ttl(state: _Holders) -> float | None:
    """Holders gone: the mark can expire. Holders left: kept, they are running jobs."""
    return IDLE_HOLDERS_TTL_S if not state.holders else None


class _Contended(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"{name} changed under {CAS_TRIES} attempts in a row")
