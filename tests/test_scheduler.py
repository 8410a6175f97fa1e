"""Cron schedules: due times across time zones and DST, exactly one run per due time on
every store, the missed-run policies, and a real worker running a periodic task.

Time is a fake clock given to the store: nothing here sleeps until a cron time.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from offload import JobState, Offload
from offload.backends.base import JobFilter, MarkNamesParams, QueryParams
from offload.errors import ConfigurationError
from offload.scheduler import CronService, Missed, run_id
from worker_helpers import WorkerThread, wait_until

PARIS = ZoneInfo("Europe/Paris")


def at(text: str, zone: ZoneInfo = PARIS) -> float:
    """'2026-03-29 01:59' in ``zone`` as epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- pure logic --------------------------------------------------------------------


@pytest.fixture
def app() -> Iterator[Offload]:
    application = Offload("memory://")
    yield application
    application.close()


def test_due_times_follow_the_zone_across_both_dst_changes(app: Offload) -> None:
    @app.periodic("30 2 * * *", tz="Europe/Paris")
    def nightly() -> None: ...

    schedule = app.schedules["nightly"]
    # Spring forward (29 March 2026): 02:30 does not exist in Paris; it runs at 03:00.
    spring = schedule.due_times(at("2026-03-28 12:00"), at("2026-03-30 12:00"), limit=10)
    assert [datetime.fromtimestamp(t, PARIS).isoformat() for t in spring] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    # Fall back (25 October 2026): 02:30 happens twice in Paris; it runs once.
    autumn = schedule.due_times(at("2026-10-24 12:00"), at("2026-10-26 12:00"), limit=10)
    assert len(autumn) == 2
    assert datetime.fromtimestamp(autumn[0], PARIS).hour == 2


def test_run_ids_are_time_ordered_and_the_same_for_every_leader() -> None:
    first, later = at("2026-01-01 02:00"), at("2026-01-02 02:00")
    assert run_id("nightly", first) == run_id("nightly", first)
    assert run_id("nightly", first) != run_id("weekly", first)
    assert run_id("nightly", first) < run_id("nightly", later)
    assert run_id("nightly", first)[14] == "7"  # a UUIDv7, like every other job id


def test_missed_policies_choose_which_passed_runs_to_make(app: Offload) -> None:
    @app.task
    def report() -> None: ...

    due = [1000.0, 2000.0, 3000.0]
    make = {m: app.schedule(report, cron="0 * * * *", missed=m, name=m.value) for m in Missed}
    assert make[Missed.ALL].runs_for(due, now_s=3010.0) == due
    assert make[Missed.ONCE].runs_for(due, now_s=9999.0) == [3000.0]
    assert make[Missed.SKIP].runs_for(due, now_s=3010.0) == [3000.0]  # on time: it runs
    assert make[Missed.SKIP].runs_for(due, now_s=9999.0) == []  # an outage's leftovers


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cron": "61 * * * *"}, "bad cron expression '61 \\* \\* \\* \\*'"),
        ({"cron": "* * *"}, "five fields"),
        ({"cron": "*/5 * * * * *"}, r"\(6 fields\); expected exactly five fields"),  # not seconds
        ({"cron": "0 2 * * * 2030"}, "expected exactly five fields"),
        ({"cron": "0 2 * * *", "tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"cron": "0 2 * * *", "missed": "sometimes"}, "missed must be one of skip, once, all"),
        ({"cron": "0 2 * * *", "args": ("not an int",)}, "days"),
    ],
)
def test_bad_schedules_are_refused_when_defined(
    app: Offload, kwargs: dict[str, object], message: str
) -> None:
    @app.task
    def purge(days: int = 30) -> None: ...

    with pytest.raises(ConfigurationError, match=message):
        app.schedule(purge, **kwargs)  # type: ignore[arg-type]
    assert app.schedules == {}


def test_two_schedules_cannot_share_a_name(app: Offload) -> None:
    @app.task
    def purge(days: int = 30) -> None: ...

    app.schedule(purge, cron="0 2 * * *")
    with pytest.raises(ConfigurationError, match="two schedules are named 'purge'"):
        app.schedule(purge, cron="0 3 * * *")
    app.schedule(purge, cron="0 3 * * *", args=(7,), name="purge-weekly")
    assert sorted(app.schedules) == ["purge", "purge-weekly"]


# -- on every store ------------------------------------------------------------------


def scheduled_jobs(app: Offload) -> list[tuple[str, str]]:
    page = app.backend.blocking.query(QueryParams(filter=JobFilter(task="nightly"), limit=1000))
    return sorted((job.meta["due"], job.id) for job in page.jobs)


def test_two_leaders_make_exactly_one_run_per_due_time(
    store_url: str, request: pytest.FixtureRequest
) -> None:
    clock = Clock(at("2026-06-01 01:59:30"))
    app = Offload(store_url, clock=clock)

    @app.periodic("0 2 * * *", tz="Europe/Paris")
    def nightly() -> None: ...

    leaders = [CronService(list(app.schedules.values())) for _ in range(2)]

    async def tick_all(times: int) -> None:
        for _ in range(times):
            await asyncio.gather(*(s.tick(app.backend, clock.now) for s in leaders))

    with asyncio.Runner() as runner:  # one loop: a network store's pool belongs to it
        try:
            runner.run(tick_all(1))  # first sight: nothing is due yet
            assert scheduled_jobs(app) == []
            clock.now = at("2026-06-01 02:00:05")
            runner.run(tick_all(5))
            clock.now = at("2026-06-02 02:00:01")
            runner.run(tick_all(5))
            runs = scheduled_jobs(app)
        finally:
            runner.run(app.aclose())
    assert runs == [
        ("2026-06-01T00:00:00+00:00", run_id("nightly", at("2026-06-01 02:00"))),
        ("2026-06-02T00:00:00+00:00", run_id("nightly", at("2026-06-02 02:00"))),
    ]
    assert sum(s.enqueued for s in leaders) == 2


@pytest.mark.parametrize(("missed", "expected_runs"), [("skip", 0), ("once", 1), ("all", 5)])
def test_runs_missed_during_downtime_follow_the_policy(
    store_url: str, missed: str, expected_runs: int
) -> None:
    clock = Clock(at("2026-06-01 08:00:30", UTC))
    app = Offload(store_url, clock=clock)

    @app.periodic("0 * * * *", missed=missed)
    def nightly() -> None: ...

    service = CronService(list(app.schedules.values()))
    with asyncio.Runner() as runner:  # one loop: a network store's pool belongs to it
        try:
            runner.run(service.tick(app.backend, clock.now))
            clock.now = at("2026-06-01 13:30:00", UTC)  # no leader from 08:00:30 to 13:30
            for _ in range(3):
                runner.run(service.tick(app.backend, clock.now))
            runs = scheduled_jobs(app)
            assert len(runs) == expected_runs
            if missed == "once":
                assert runs[0][0] == "2026-06-01T13:00:00+00:00"  # the latest missed time
            # back on time: the next hour runs under every policy
            clock.now = at("2026-06-01 14:00:02", UTC)
            runner.run(service.tick(app.backend, clock.now))
            assert len(scheduled_jobs(app)) == expected_runs + 1
        finally:
            runner.run(app.aclose())


def test_a_worker_runs_a_periodic_task_when_it_falls_due(store_url: str, tmp_path: Path) -> None:
    clock = Clock(at("2026-06-01 11:59:58", UTC))
    app = Offload(store_url, clock=clock, default_retries=0)
    ran: list[str] = []

    @app.periodic("0 12 * * *")
    def nightly() -> None:
        ran.append("noon")

    try:
        with WorkerThread(app, maintenance_interval_s=0.05):
            # the leader has seen the schedule once it wrote its mark
            wait_until(lambda: _mark(app) is not None, what="the leader to see the schedule")
            clock.now = at("2026-06-01 12:00:01", UTC)
            wait_until(lambda: ran == ["noon"], what="the noon run")
            (run,) = scheduled_jobs(app)
            wait_until(lambda: app.job(run[1]).state is JobState.SUCCEEDED)
    finally:
        app.close()


def _mark(app: Offload) -> str | None:
    return app.backend.blocking.get_marks(MarkNamesParams(names=["cron:nightly"])).get(
        "cron:nightly"
    )


# -- the CLI -------------------------------------------------------------------------------


def test_the_cli_lists_schedules_with_their_next_run(tmp_path: Path) -> None:
    module = tmp_path / "cron_app.py"
    module.write_text(
        "from offload import Offload\n"
        f"app = Offload('sqlite:///{tmp_path}/cli.db')\n"
        "@app.periodic('0 2 * * *', tz='Europe/Paris', missed='once')\n"
        "def nightly() -> None: ...\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "offload", "schedules", "cron_app:app", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["name"] == "nightly" and row["missed"] == "once" and row["tz"] == "Europe/Paris"
    assert row["last_due"] is None  # no worker has run yet
    next_run = datetime.fromisoformat(row["next_run"])
    assert (next_run.hour, next_run.minute) == (2, 0)
    assert next_run > datetime.now(UTC)
