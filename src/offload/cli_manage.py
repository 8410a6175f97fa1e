"""The ``offload`` commands that manage jobs, queues and workers: all through ``app.admin``."""

from __future__ import annotations

import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import click
import msgspec
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from offload.admin import Action
from offload.cli_common import (
    STATE_NAMES,
    Fail,
    app_option,
    console,
    emit_json,
    error_line,
    friendly,
    json_option,
    open_app,
    url_option,
)
from offload.errors import JobNotFound
from offload.present import iso, job_dict
from offload.states import JobState

filter_options = [
    click.option(
        "--state",
        "states",
        multiple=True,
        type=click.Choice(STATE_NAMES),
        help="Repeat for several states.",
    ),
    click.option("--queue", default=None),
    click.option("--task", "task_name", default=None),
    click.option("--owner", default=None),
    click.option("--batch", default=None),
    click.option(
        "--search",
        "text",
        default=None,
        help="Text in the id, task, owner or arguments (any case).",
    ),
]


def with_filters(fn: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(filter_options):
        fn = option(fn)
    return fn


def _filters(
    states: tuple[str, ...], queue: str | None, task_name: str | None, owner: str | None,
    batch: str | None, text: str | None,
) -> dict[str, object]:  # fmt: skip
    return {"state": list(states) or None, "queue": queue, "task": task_name, "owner": owner,
            "batch": batch, "text": text}  # fmt: skip


@click.command("job")
@click.argument("job_id")
@url_option
@app_option
@json_option
@friendly
def job_command(job_id: str, url: str | None, app_spec: str | None, as_json: bool) -> None:
    """Show one job, with every attempt."""
    app = open_app(app_spec, url)
    try:
        record = app.admin.get(job_id)
    except JobNotFound:
        raise Fail(
            f"no job with id {job_id!r} in {app.display_url} (check the id, or --url)"
        ) from None
    data = job_dict(record)
    if as_json:
        emit_json(data)
        return
    out = console()
    for name, value in data.items():
        if value in (None, {}, []) and name not in ("args", "kwargs"):
            continue
        if name == "error":
            out.print(f"[bold]error[/]: {escape(value['type'])}: {escape(value['message'])}")
            if value.get("traceback"):
                out.print(value["traceback"], markup=False, highlight=False)
            continue
        if name == "attempts":
            for attempt in value:
                why = attempt["error"]["message"] if attempt["error"] else ""
                out.print(
                    f"[bold]attempt {attempt['number']}[/]: {attempt['outcome']} on "
                    f"{escape(str(attempt['worker']))}, {attempt['started_at']} to "
                    f"{attempt['ended_at']} {escape(why)}",
                    highlight=False,
                )
            continue
        out.print(f"[bold]{name}[/]: {escape(msgspec.json.encode(value).decode())}",
                  highlight=False)  # fmt: skip


@click.command()
@with_filters
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--cursor", default=None, help="The next_cursor the previous page printed.")
@url_option
@app_option
@json_option
@friendly
def jobs(
    states: tuple[str, ...], queue: str | None, task_name: str | None, owner: str | None,
    batch: str | None, text: str | None, limit: int, cursor: str | None, url: str | None,
    app_spec: str | None, as_json: bool,
) -> None:  # fmt: skip
    """List jobs, newest first."""
    app = open_app(app_spec, url)
    page = app.admin.jobs(
        cursor=cursor,
        limit=limit,
        **_filters(states, queue, task_name, owner, batch, text),  # type: ignore[arg-type]
    )
    if as_json:
        emit_json(
            {
                "jobs": [job_dict(j, with_traceback=False) for j in page.jobs],
                "next_cursor": page.next_cursor,
            }
        )
        return
    table = Table("task", "queue", "state", "try", "done", "created", "error", box=None)
    table.add_column("id", no_wrap=True, min_width=36)
    for record in page.jobs:
        table.add_row(
            Text(record.task), Text(record.queue), record.state.value,
            f"{record.attempt}/{record.max_attempts}", f"{record.progress:.0%}",
            (iso(record.created_at) or "")[11:19],
            Text(error_line(record) if record.error else ""),
            record.id,
        )  # fmt: skip
    console().print(table)
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}")


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
            Text(row.name), *(str(row.counts.get(s, 0)) for s in STATE_NAMES), age,
            str(row.finished_last_minute), "paused" if row.paused else "",
        )  # fmt: skip
    console().print(table)


def _act(action: Action, job_ids: tuple[str, ...], url: str | None, app_spec: str | None,
         as_json: bool, target: JobState) -> None:  # fmt: skip
    app = open_app(app_spec, url)
    results = []
    failed = False
    for job_id in job_ids:
        try:
            if action is Action.DELETE:
                app.admin.delete(job_id)
                results.append({"id": job_id, "ok": True, "state": "deleted"})
                continue
            record = (
                app.admin.cancel(job_id) if action is Action.CANCEL else app.admin.retry(job_id)
            )
        except JobNotFound:
            results.append({"id": job_id, "ok": False, "reason": "no such job"})
            failed = True
            continue
        except ValueError as exc:
            results.append({"id": job_id, "ok": False, "reason": str(exc)})
            failed = True
            continue
        ok = record.state is target
        failed |= not ok
        results.append({"id": job_id, "ok": ok, "state": record.state.value})
    if as_json:
        emit_json(results)
    else:
        for item in results:
            if item["ok"]:
                click.echo(f"{item['id']}: {item['state']}")
            else:
                why = item.get("reason") or f"cannot {action.value} a job that is {item['state']}"
                click.echo(f"offload: error: {item['id']}: {why}", err=True)
    if failed:
        sys.exit(1)


def _bulk(action: Action, filters: dict[str, object], expected: int | None, everything: bool,
          url: str | None, app_spec: str | None, as_json: bool) -> None:  # fmt: skip
    """``--expect N``: act once the count is known; without it, print the count to confirm."""
    app = open_app(app_spec, url)
    found = app.admin.count(action=action, **filters)  # type: ignore[arg-type]
    if expected is None:
        if as_json:
            emit_json({"would_touch": found})
        else:
            click.echo(f"{found} job(s) match; run again with --expect {found} to "
                       f"{action.value} them")  # fmt: skip
        return
    run = {
        Action.CANCEL: app.admin.cancel_matching,
        Action.RETRY: app.admin.retry_matching,
        Action.DELETE: app.admin.delete_matching,
    }[action]
    touched = run(expected=expected, everything=everything, **filters)  # type: ignore[arg-type]
    if as_json:
        emit_json({"touched": touched})
    else:
        click.echo(f"{action.value}: {touched} job(s)")


def _one_or_many(action: Action, target: JobState) -> click.Command:
    @click.command(action.value)
    @click.argument("job_ids", nargs=-1, metavar="[ID...]")
    @with_filters
    @click.option("--expect", "expected", type=click.IntRange(0), default=None,
                  help="With filters: the count you saw; refused if more match now.")  # fmt: skip
    @click.option("--all", "everything", is_flag=True, help="Allow a filter-less bulk action.")
    @url_option
    @app_option
    @json_option
    @friendly
    def command(
        job_ids: tuple[str, ...], states: tuple[str, ...], queue: str | None,
        task_name: str | None, owner: str | None, batch: str | None, text: str | None,
        expected: int | None, everything: bool, url: str | None, app_spec: str | None,
        as_json: bool,
    ) -> None:  # fmt: skip
        filters = _filters(states, queue, task_name, owner, batch, text)
        filtered = any(v for v in filters.values()) or everything
        if job_ids and filtered:
            raise Fail(f"give job ids or filters to {action.value}, not both")
        if job_ids:
            _act(action, job_ids, url, app_spec, as_json, target)
        elif filtered:
            _bulk(action, filters, expected, everything, url, app_spec, as_json)
        else:
            raise Fail(f"name the jobs to {action.value}: job ids, or filters such as --state")

    command.help = {
        Action.CANCEL: "Cancel jobs that have not ended (a running job is stopped at once).",
        Action.RETRY: "Queue dead or cancelled jobs again.",
        Action.DELETE: "Forget jobs that are not running.",
    }[action] + " By ids, or every job matching filters (count first, then --expect N)."
    return command


cancel = _one_or_many(Action.CANCEL, JobState.CANCELLED)
retry = _one_or_many(Action.RETRY, JobState.QUEUED)
delete = _one_or_many(Action.DELETE, JobState.QUEUED)


@click.command()
@click.option("--state", "states", multiple=True, required=True,
              type=click.Choice(STATE_NAMES), help="Repeat for several states.")  # fmt: skip
@click.option("--queue", default=None)
@click.option("--yes", is_flag=True, help="Also allow purging live (queued/running) jobs.")
@url_option
@app_option
@json_option
@friendly
def purge(
    states: tuple[str, ...], queue: str | None, yes: bool, url: str | None,
    app_spec: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Delete jobs in the given states (running ones are cancelled first)."""
    chosen = [JobState(s) for s in states]
    live = [s.value for s in chosen if not s.is_terminal]
    if live and not yes:
        raise Fail(
            f"purging {', '.join(live)} jobs deletes work not yet done; add --yes to confirm"
        )
    app = open_app(app_spec, url)
    if JobState.RUNNING in chosen:
        running = app.admin.count(state="running", queue=queue)
        app.admin.cancel_matching(expected=running, state="running", queue=queue)
        chosen.append(JobState.CANCELLED) if JobState.CANCELLED not in chosen else None
    found = app.admin.count(action=Action.DELETE, state=chosen, queue=queue)
    deleted = app.admin.delete_matching(expected=found, state=chosen, queue=queue)
    if as_json:
        emit_json({"deleted": deleted})
    else:
        click.echo(f"deleted {deleted} job(s)")


def _pause_command(paused: bool) -> click.Command:
    verb = "pause" if paused else "resume"

    @click.command(verb)
    @click.argument("queue")
    @url_option
    @app_option
    @friendly
    def command(queue: str, url: str | None, app_spec: str | None) -> None:
        app = open_app(app_spec, url)
        changed = app.admin.pause(queue) if paused else app.admin.resume(queue)
        state = "paused" if paused else "resumed"
        click.echo(f"queue {queue}: {state}" if changed else f"queue {queue} was already {state}")

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


COMMANDS = [job_command, jobs, schedules, stats, cancel, retry, delete, purge, pause, resume,
            workers]  # fmt: skip
