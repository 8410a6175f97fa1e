"""The ``offload`` commands about queues, schedules and workers: all through ``app.admin``."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import click
import msgspec
from rich.table import Table
from rich.text import Text

from offload.cli_common import (
    STATE_NAMES,
    app_option,
    console,
    emit_json,
    friendly,
    json_option,
    open_app,
    printable,
    url_option,
)
from offload.present import iso


@click.command()
@click.argument("app_spec", metavar="APP")
@url_option
@json_option
@friendly
def schedules(app_spec: str, url: str | None, as_json: bool) -> None:
    """The app's cron schedules, with their last and next run."""
    app = open_app(app_spec, url)
    rows = []
    for entry in app.admin.schedules():
        zone = ZoneInfo(entry.tz)
        rows.append({
            "name": entry.name, "task": entry.task, "cron": entry.cron, "tz": entry.tz,
            "when": entry.when, "missed": entry.missed,
            "last_due": None if entry.last_due_s is None else _local(entry.last_due_s, zone),
            "next_run": None if entry.next_run_s is None else _local(entry.next_run_s, zone),
        })  # fmt: skip
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo(f"{app_spec} has no schedules (see @app.periodic and app.schedule)")
        return
    table = Table("name", "task", "cron", "when", "tz", "missed", "last due", "next run", box=None)
    for row in rows:
        table.add_row(*(Text(str(row[c] or "")) for c in (
            "name", "task", "cron", "when", "tz", "missed", "last_due", "next_run")))  # fmt: skip
    console().print(table)


def _local(seconds: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(seconds, zone).isoformat(timespec="seconds")


@click.command()
@url_option
@app_option
@json_option
@friendly
def stats(url: str | None, app_spec: str | None, as_json: bool) -> None:
    """Jobs per queue and state, how far behind the workers are, and paused queues."""
    app = open_app(app_spec, url)
    rows = [q for q in app.admin.queues() if any(q.counts.values()) or q.paused]
    if as_json:
        emit_json([
            {"queue": r.name, "counts": r.counts, "paused": r.paused,
             "oldest_ready_age_s": r.oldest_ready_age_s,
             "finished_last_minute": r.finished_last_minute}
            for r in rows
        ])  # fmt: skip
        return
    table = Table("queue", *STATE_NAMES, "oldest ready", "ended/min", "paused", box=None)
    for row in rows:
        age = "" if row.oldest_ready_age_s is None else f"{row.oldest_ready_age_s:.1f}s"
        table.add_row(
            Text(printable(row.name)), *(str(row.counts.get(s, 0)) for s in STATE_NAMES), age,
            str(row.finished_last_minute), "paused" if row.paused else "",
        )  # fmt: skip
    console().print(table)


def _pause_command(paused: bool) -> click.Command:
    verb = "pause" if paused else "resume"

    @click.command(verb)
    @click.argument("queue")
    @url_option
    @app_option
    @json_option
    @friendly
    def command(queue: str, url: str | None, app_spec: str | None, as_json: bool) -> None:
        app = open_app(app_spec, url)
        changed = app.admin.pause(queue) if paused else app.admin.resume(queue)
        state = "paused" if paused else "resumed"
        if as_json:
            emit_json({"queue": queue, "paused": paused, "changed": changed})
        else:
            click.echo(
                f"queue {queue}: {state}" if changed else f"queue {queue} was already {state}"
            )

    command.help = (
        "Stop workers claiming from QUEUE (within about a second); running jobs go on."
        if paused else "Let workers claim from QUEUE again."
    )  # fmt: skip
    return command


pause = _pause_command(True)
resume = _pause_command(False)


@click.command()
@url_option
@app_option
@json_option
@friendly
def workers(url: str | None, app_spec: str | None, as_json: bool) -> None:
    """Live workers: host, pid, queues, slots and the jobs each runs."""
    app = open_app(app_spec, url)
    found = app.admin.workers()
    if as_json:
        emit_json([msgspec.to_builtins(w) for w in found])
        return
    if not found:
        click.echo("no live workers")
        return
    table = Table("id", "host", "pid", "queues", "slots", "running", "last seen", box=None)
    for w in found:
        table.add_row(
            Text(w.id), Text(w.host), str(w.pid), Text(",".join(w.queues)), str(w.concurrency),
            str(len(w.running)), (iso(w.last_seen) or "")[11:19],
        )  # fmt: skip
    console().print(table)


COMMANDS = [schedules, stats, pause, resume, workers]
