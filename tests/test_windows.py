"""Off-peak windows: jobs start only within their daily hours, on every store.

A fake clock drives both the app (which places a job at enqueue) and the store:
nothing waits for 1 a.m. for real.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from offload import JobState, Offload, Retry
from offload.backends import open_backend
from offload.backends.base import Outcome, OutcomeKind
from offload.errors import ConfigurationError
from offload.windows import Window, keep_retry_in_window, retry_in_window
from worker_helpers import WorkerThread, wait_until

PARIS = ZoneInfo("Europe/Paris")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=PARIS).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- pure logic -----------------------------------------------------------------------


def test_a_window_opens_today_or_tomorrow_and_may_span_midnight() -> None:
    night = Window.parse("01:00-05:00 Europe/Paris")
    assert night.next_start(at("2026-06-01 03:00")) == at("2026-06-01 03:00")  # open now
    assert night.next_start(at("2026-06-01 00:30")) == at("2026-06-01 01:00")
    assert night.next_start(at("2026-06-01 05:00")) == at("2026-06-02 01:00")  # end excluded
    late = Window.parse("22:00-02:00 Europe/Paris")
    assert late.contains(at("2026-06-01 23:30")) and late.contains(at("2026-06-02 01:59"))
    assert late.next_start(at("2026-06-01 12:00")) == at("2026-06-01 22:00")
    assert str(Window.parse("1:00-5:30")) == "01:00-05:30 UTC"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("01:00 to 05:00", "must look like '01:00-05:00 Europe/Paris'"),
        ("25:00-05:00", "hour must be in 0..23"),
        ("01:00-01:00", "is empty"),
        ("01:00-05:00 Atlantis/Capital", "unknown time zone 'Atlantis/Capital'"),
    ],
)
def test_bad_windows_are_refused_with_the_form(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Window.parse(text)


def test_a_retry_waits_for_the_next_opening() -> None:
    outcome = Outcome(id="j", delivery=1, kind=OutcomeKind.RETRY, retry_delay_s=60.0)
    inside = retry_in_window(outcome, "01:00-05:00 Europe/Paris", at("2026-06-01 02:00"))
    assert inside.retry_delay_s == 60.0  # still open a minute later: unchanged
    closing = retry_in_window(outcome, "01:00-05:00 Europe/Paris", at("2026-06-01 04:59:30"))
    assert closing.retry_delay_s == at("2026-06-02 01:00") - at("2026-06-01 04:59:30")


# -- on every store ----------------------------------------------------------------------


def test_jobs_wait_as_scheduled_until_their_window_opens(store_url: str) -> None:
    clock = Clock(at("2026-06-01 14:00"))
    app = Offload(store_url, clock=clock, default_retries=0)
    ran: list[str] = []

    @app.task(window="01:00-05:00 Europe/Paris")
    def reindex(name: str) -> None:
        ran.append(name)

    @app.task
    def thumbnail(name: str) -> None:
        ran.append(name)

    try:
        deferred = reindex.enqueue("nightly")
        one_off = thumbnail.options(window="22:00-23:00 Europe/Paris").enqueue("evening")
        urgent = thumbnail.enqueue("now")
        assert deferred.state is JobState.SCHEDULED
        assert app.job(deferred.id).record.run_at == at("2026-06-02 01:00")
        assert app.job(one_off.id).record.run_at == at("2026-06-01 22:00")
        assert app.job(deferred.id).record.meta["window"] == "01:00-05:00 Europe/Paris"
        with WorkerThread(app, idle_check_s=0.05):  # the fake clock jumps; look again soon
            wait_until(lambda: ran == ["now"], what="the job without a window")
            clock.now = at("2026-06-01 22:00:01")
            wait_until(lambda: "evening" in ran, what="the evening window")
            assert "nightly" not in ran
            clock.now = at("2026-06-02 01:00:01")
            wait_until(lambda: "nightly" in ran, what="the night window")
            wait_until(lambda: app.job(deferred.id).state is JobState.SUCCEEDED)
        assert urgent.state is JobState.SUCCEEDED
    finally:
        app.close()


def test_a_retry_that_would_fall_outside_the_window_waits_for_the_next(store_url: str) -> None:
    clock = Clock(at("2026-06-01 04:59:50"))
    app = Offload(store_url, clock=clock)
    attempts: list[float] = []

    @app.task(window="01:00-05:00 Europe/Paris", retries=1)
    def flaky() -> None:
        attempts.append(clock.now)
        if len(attempts) == 1:
            raise Retry(delay_s=30)

    try:
        job = flaky.enqueue()
        with WorkerThread(app, idle_check_s=0.05):  # the fake clock jumps; look again soon
            wait_until(lambda: app.job(job.id).state is JobState.SCHEDULED and attempts)
            assert app.job(job.id).record.run_at == at("2026-06-02 01:00")
            clock.now = at("2026-06-02 01:00:00.5")
            wait_until(lambda: app.job(job.id).state is JobState.SUCCEEDED)
        assert len(attempts) == 2
    finally:
        app.close()


def test_a_window_is_placed_on_the_stores_clock_not_the_callers(store_url: str) -> None:
    """At 04:00 in Paris on the store's clock the night window is open: a caller whose clock
    runs two hours fast must not put the job off to the next night."""
    store_clock = Clock(at("2026-06-01 04:00"))
    app = Offload(
        clock=lambda: store_clock() + 7200, backend=open_backend(store_url, clock=store_clock)
    )

    @app.task(window="01:00-05:00 Europe/Paris")
    def reindex(name: str) -> None: ...

    try:
        job = reindex.enqueue("nightly")
        assert app.job(job.id).record.run_at == at("2026-06-01 04:00")
        retry = Outcome(id=job.id, delivery=1, kind=OutcomeKind.RETRY, retry_delay_s=60.0)
        placed = asyncio.run(keep_retry_in_window(app, job.record, retry))
        assert placed.retry_delay_s == 60.0  # still inside the window a minute later
    finally:
        app.close()
