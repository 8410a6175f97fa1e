"""Off-peak windows: deferrable work may only start within daily hours in a time zone.

A job with a window is stored with ``run_at`` moved to the window's next opening,
so it waits as ``scheduled`` at no cost to anyone; its retries are placed the
same way. The window travels in the job's ``meta`` so that every worker, and
the dashboard, can see it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from offload.backends.base import Outcome, OutcomeKind
from offload.errors import ConfigurationError
from offload.records import JobRecord

if TYPE_CHECKING:
    from offload.app import Offload
    from offload.hooks import Hooks

META_KEY = "window"
_FORM = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})(?:\s+(\S+))?\s*$")


@dataclass(frozen=True)
class Window:
    """Daily hours ``start``-``end`` in ``zone``; an end before the start spans midnight."""

    start: time
    end: time
    zone: str

    @classmethod
    def parse(cls, text: str) -> Window:
        """``"01:00-05:00 Europe/Paris"`` (the zone defaults to UTC)."""
        match = _FORM.match(text) if isinstance(text, str) else None
        if match is None:
            raise ConfigurationError(
                f"window must look like '01:00-05:00 Europe/Paris', got {text!r}"
            )
        h1, m1, h2, m2, zone = match.groups()
        try:
            start, end = time(int(h1), int(m1)), time(int(h2), int(m2))
        except ValueError as exc:
            raise ConfigurationError(f"window {text!r}: {exc}") from exc
        if start == end:
            raise ConfigurationError(f"window {text!r} is empty: start and end are equal")
        zone = zone or "UTC"
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigurationError(f"window {text!r}: unknown time zone {zone!r}") from exc
        return cls(start=start, end=end, zone=zone)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.zone}"

    def contains(self, at_s: float) -> bool:
        local = datetime.fromtimestamp(at_s, ZoneInfo(self.zone)).time()
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_start(self, at_s: float) -> float:
        """``at_s`` if the window is open then, else when it next opens."""
        if self.contains(at_s):
            return at_s
        zone = ZoneInfo(self.zone)
        day = datetime.fromtimestamp(at_s, zone).date()
        for offset in range(3):  # today's opening or tomorrow's (DST may shift one)
            opening = datetime.combine(day + timedelta(days=offset), self.start, zone)
            opening_s = opening.timestamp()
            if opening_s > at_s:
                return opening_s
        raise AssertionError("a daily window opens within two days")  # pragma: no cover


def retry_in_window(outcome: Outcome, window: str, now_s: float) -> Outcome:
    """Move a retry's delay so that the next attempt also starts inside the job's window."""
    try:
        parsed = Window.parse(window)
    except ConfigurationError:
        return outcome  # a window written by another version: retry as planned
    start_s = parsed.next_start(now_s + outcome.retry_delay_s)
    return msgspec.structs.replace(outcome, retry_delay_s=max(0.0, start_s - now_s))


async def keep_retry_in_window(app: Offload, job: JobRecord, outcome: Outcome) -> Outcome:
    """Outcome hook: a retry of a windowed job is placed inside its window."""
    if outcome.kind is not OutcomeKind.RETRY or META_KEY not in job.meta:
        return outcome
    return retry_in_window(outcome, job.meta[META_KEY], await app.store_now_async())


def register(hooks: Hooks) -> None:
    hooks.after_run.append(keep_retry_in_window)
