"""The ``offload`` commands that find and act on jobs: all through ``app.admin``."""

from __future__ import annotations

import sys
from typing import Any

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
    printable,
    url_option,
)
from offload.errors import JobNotFound
from offload.present import iso, job_dict
from offload.records import JobRecord
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
    data = job_dict(record, task=app.tasks.get(record.task))
    if as_json:
        emit_json(data)
        return
    out = console()
    for name, value in data.items():
        if value in (None, {}, []) and name not in ("args", "kwargs"):
            continue
        if name == "error":
            line = printable(f"{value['type']}: {value['message']}")
            out.print(f"[bold]error[/]: {escape(line)}", highlight=False)
            if value.get("traceback"):
                trace = printable(value["traceback"], keep="\n")
                out.print(trace, markup=False, highlight=False)
            continue
        if name == "attempts":
            for attempt in value:
                why = printable(attempt["error"]["message"]) if attempt["error"] else ""
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
                "jobs": [
                    job_dict(j, with_traceback=False, task=app.tasks.get(j.task)) for j in page.jobs
                ],
                "next_cursor": page.next_cursor,
            }
        )
        return
    table = Table("task", "queue", "state", "try", "done", "created", "error", box=None)
    table.add_column("id", no_wrap=True, min_width=36)
    for record in page.jobs:
        table.add_row(
            Text(printable(record.task)), Text(printable(record.queue)), record.state.value,
            f"{record.attempt}/{record.max_attempts}", f"{record.progress:.0%}",
            (iso(record.created_at) or "")[11:19],
            Text(error_line(record) if record.error else ""),
            record.id,
        )  # fmt: skip
    console().print(table)
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}")


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
    deleted = 0
    if JobState.RUNNING in chosen:  # cancel exactly the running ones, then delete them
        chosen.remove(JobState.RUNNING)
        running = [j.id for j in _every(app, state="running", queue=queue)]
        for job_id in running:
            app.admin.cancel(job_id)
            app.admin.delete(job_id)
        deleted += len(running)
    if chosen:
        found = app.admin.count(action=Action.DELETE, state=chosen, queue=queue)
        deleted += app.admin.delete_matching(expected=found, state=chosen, queue=queue)
    if as_json:
        emit_json({"deleted": deleted})
    else:
        click.echo(f"deleted {deleted} job(s)")


def _every(app: Any, **filters: Any) -> list[JobRecord]:
    """Every matching job, page by page."""
    found: list[JobRecord] = []
    cursor = None
    while True:
        page = app.admin.jobs(cursor=cursor, limit=1000, **filters)
        found += page.jobs
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


COMMANDS = [job_command, jobs, cancel, retry, delete, purge]
