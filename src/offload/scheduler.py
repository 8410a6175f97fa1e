"""Cron schedules: when a schedule is due, and the leader service that enqueues its runs.

Exactly one run per due time, however many workers and leaders are up: each
run's job id is derived from (schedule, due time), so a second leader's enqueue
of the same run is refused as a duplicate, and the schedule's progress is a
store *mark* advanced by compare-and-set only after its runs are stored. A
leader that dies between the two repeats the enqueue, which is refused again.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cronsim
import msgspec

from offload.backends.base import (
    Backend,
    DuplicateJob,
    EnqueueParams,
    MarkNamesParams,
    MarkParams,
    ValueRejected,
)
from offload.errors import ConfigurationError, InvalidArguments
from offload.ids import derived_id

if TYPE_CHECKING:
    from offload.task import Task

log = logging.getLogger("offload.scheduler")

#: Due times enqueued per schedule and tick under ``missed="all"``; the rest follow next tick.
CATCH_UP_PER_TICK = 500
#: A due time this recent still runs under ``missed="skip"``: leaders tick about every second,
#: so only a real outage (or a leader change) makes a run this late.
ON_TIME_S = 60.0
#: Cron expressions that never fire again within this many due times are refused.
_SCAN_LIMIT = 1_000_000


class Missed(enum.StrEnum):
    """What a schedule does about due times that passed while no leader was up."""

    SKIP = "skip"  # run only what is due now; missed runs are dropped
    ONCE = "once"  # run once for all the missed due times, at the latest of them
    ALL = "all"  # run every missed due time, oldest first


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(
            f"unknown time zone {tz!r}; use an IANA name such as 'Europe/Paris' or 'UTC'"
        ) from exc


@dataclass(frozen=True)
class Schedule:
    """A task with fixed arguments, run at the times a cron expression names in ``tz``."""

    name: str
    task: Task[Any, Any]
    cron: str
    tz: str = "UTC"
    missed: Missed = Missed.SKIP
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        zone = _zone(self.tz)
        try:
            if not isinstance(self.cron, str) or len(self.cron.split()) != 5:
                # cronsim would read a sixth field as seconds: a run every second or so
                raise cronsim.CronSimError(f"{len(str(self.cron).split())} fields")
            cronsim.CronSim(self.cron, datetime.now(zone))
        except cronsim.CronSimError as exc:
            raise ConfigurationError(
                f"schedule {self.name!r}: bad cron expression {self.cron!r} ({exc}); "
                "expected exactly five fields: minute hour day-of-month month day-of-week"
            ) from exc
        try:
            object.__setattr__(self, "missed", Missed(self.missed))
        except ValueError as exc:
            raise ConfigurationError(
                f"schedule {self.name!r}: missed must be one of skip, once, all, "
                f"got {self.missed!r}"
            ) from exc
        try:  # bad arguments fail at definition, not at 2 a.m.
            self.task.codec.encode_args(self.args, dict(self.kwargs))
        except InvalidArguments as exc:
            raise ConfigurationError(f"schedule {self.name!r}: {exc}") from exc

    @property
    def mark(self) -> str:
        return "cron:" + self.name

    def describe(self) -> str:
        return str(cronsim.CronSim(self.cron, datetime.now(_zone(self.tz))).explain())

    def due_times(self, after_s: float, until_s: float, limit: int) -> list[float]:
        """Due times in (after_s, until_s], oldest first, at most ``limit``."""
        zone = _zone(self.tz)
        times: list[float] = []
        for scanned, due in enumerate(
            cronsim.CronSim(self.cron, datetime.fromtimestamp(after_s, zone))
        ):
            due_s = due.timestamp()
            if due_s > until_s or scanned >= _SCAN_LIMIT:
                break
            if due_s > after_s:
                times.append(due_s)
            if len(times) >= limit:
                break
        return times

    def next_due(self, after_s: float) -> float | None:
        """The first due time after ``after_s`` (None if the expression never fires)."""
        zone = _zone(self.tz)
        for due in cronsim.CronSim(self.cron, datetime.fromtimestamp(after_s, zone)):
            if due.timestamp() > after_s:
                return due.timestamp()
        return None

    def runs_for(self, due: Sequence[float], now_s: float) -> list[float]:
        """Which of the passed due times to run, under the missed-run policy."""
        if not due:
            return []
        if self.missed is Missed.ALL:
            return list(due)
        if self.missed is Missed.ONCE:
            return [due[-1]]
        return [due[-1]] if now_s - due[-1] <= ON_TIME_S else []


def run_id(schedule: str, due_s: float) -> str:
    """The job id of a schedule's run: time-ordered like every job id (its time is the due
    time), and the same for every leader that computes it."""
    due_ms = round(due_s * 1000)
    return derived_id(due_ms, f"{schedule}\0{due_ms}")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


class CronService:
    """Leader-only: enqueue every due run of the app's schedules, once."""

    def __init__(self, schedules: Sequence[Schedule]) -> None:
        self.schedules = list(schedules)
        self.enqueued = 0

    async def tick(self, backend: Backend, now_s: float) -> float | None:
        """Enqueue the runs that fell due; returns the seconds until the next one."""
        if not self.schedules:
            return None
        marks = await backend.get_marks(MarkNamesParams(names=[s.mark for s in self.schedules]))
        for schedule in self.schedules:
            last = marks.get(schedule.mark)
            if last is None:  # first sight: runs start from now, nothing to catch up on
                await backend.set_mark(MarkParams(name=schedule.mark, value=repr(now_s)))
                continue
            await self._advance(backend, schedule, float(last), last, now_s)
        upcoming = [t for s in self.schedules if (t := s.next_due(now_s)) is not None]
        return max(0.0, min(upcoming) - now_s) if upcoming else None

    async def _advance(
        self, backend: Backend, schedule: Schedule, last_s: float, last: str, now_s: float
    ) -> None:
        limit = CATCH_UP_PER_TICK if schedule.missed is Missed.ALL else _SCAN_LIMIT
        due = schedule.due_times(last_s, now_s, limit)
        if not due:
            return
        runs = schedule.runs_for(due, now_s)
        skipped = len(due) - len(runs)
        for due_s in runs:
            new = (
                schedule.task.options(
                    run_at=due_s, meta={"schedule": schedule.name, "due": _iso(due_s)}
                )
                .s(*schedule.args, **schedule.kwargs)
                .to_new_job()
            )
            new = msgspec.structs.replace(new, id=run_id(schedule.name, due_s))
            try:
                await backend.enqueue(EnqueueParams(jobs=[new]))
                self.enqueued += 1
            except DuplicateJob:
                pass  # another leader stored this run first: exactly once all the same
            except ValueRejected as exc:  # can never be stored: skip the run, not the schedule
                log.error("schedule %s: the store refused the run due %s (%s); skipped",
                          schedule.name, _iso(due_s), exc)  # fmt: skip
        if skipped:
            log.warning(
                "schedule %s: %d run(s) missed while no worker was up were skipped "
                "(missed=%s)",
                schedule.name, skipped, schedule.missed.value,
            )  # fmt: skip
        await backend.set_mark(MarkParams(name=schedule.mark, value=repr(due[-1]), expected=last))
