"""The ``offload`` command. Every failure is one line that says what to do, never a traceback."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click
import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from offload.app import DEFAULT_URL, Offload
from offload.backends.base import (
    BackendError,
    IdsParams,
    JobFilter,
    MarkNamesParams,
    PurgeParams,
    QueryParams,
)
from offload.errors import OffloadError
from offload.loader import load_app
from offload.present import iso, job_dict
from offload.records import JobRecord
from offload.states import JobState

F = TypeVar("F", bound=Callable[..., Any])
STATE_NAMES = [s.value for s in JobState]


class Fail(click.ClickException):
    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"offload: error: {self.message}", err=True)


def friendly(fn: F) -> F:
    """Turn expected failures into one readable line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (OffloadError, BackendError, ValueError, TypeError, OSError) as exc:
            raise Fail(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


url_option = click.option(
    "--url", envvar="OFFLOAD_URL", default=None, metavar="URL",
    help=f"Store URL (default: $OFFLOAD_URL, the app's URL, then {DEFAULT_URL}).",
)  # fmt: skip
app_option = click.option(
    "--app", "app_spec", default=None, metavar="APP",
    help="module:attribute of the app, to use its URL and decode its results.",
)  # fmt: skip
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def open_app(app_spec: str | None, url: str | None) -> Offload:
    app = load_app(app_spec) if app_spec else Offload(url or DEFAULT_URL)
    if url and app.url != url:
        app.use_url(url)
    return app


def console() -> Console:
    """Tables at full width when piped, so ids are never cut short."""
    return Console(width=None if sys.stdout.isatty() else 200)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def parse_json(text: str, what: str, expected: type) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Fail(f"{what} is not valid JSON ({exc.msg} at column {exc.colno}): {text!r}") from exc
    if not isinstance(value, expected):
        kind = "a JSON array like '[1, \"a\"]'" if expected is list else "a JSON object"
        raise Fail(f"{what} must be {kind}, got {text!r}")
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="offload")
def main() -> None:
    """offload: background jobs that are never lost."""
    # Driver pools log every failed reconnect; our one-line errors say it once.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


@main.command()
@click.argument("app_spec", metavar="APP")
@click.option("-q", "--queues", default=None, help="Comma-separated queues (default: the app's).")
@click.option("-c", "--concurrency", default=10, show_default=True, type=click.IntRange(1, 10_000))
@click.option(
    "--pool",
    type=click.Choice(["async", "thread", "process"]),
    default="async",
    show_default=True,
    help="Where tasks run; process can kill stuck tasks.",
)
@click.option("--burst", is_flag=True, help="Exit 0 once no job is ready.")
@click.option("--grace", "grace_s", default=30.0, show_default=True, type=click.FloatRange(0),
              help="Seconds running jobs get to finish after SIGTERM.")  # fmt: skip
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@url_option
@friendly
def worker(
    app_spec: str, queues: str | None, concurrency: int, pool: str, burst: bool,
    grace_s: float, log_level: str, url: str | None,
) -> None:  # fmt: skip
    """Run jobs of APP (module:attribute) until SIGTERM or SIGINT."""
    from offload.worker import Worker, run_worker

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = open_app(app_spec, url)
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    runner = Worker(
        app, queues=queue_list, concurrency=concurrency, pool=pool,  # type: ignore[arg-type]
        burst=burst, grace_s=grace_s, app_spec=app_spec,
    )  # fmt: skip
    stats = run_worker(runner)
    logging.getLogger("offload.worker").info(
        "worker stopped: %d started, %d succeeded, %d retried, %d dead, %d handed back, "
        "%d held back by limits",
        stats.started, stats.succeeded, stats.retried, stats.dead, stats.released,
        stats.deferred,
    )  # fmt: skip


@main.command()
@click.argument("app_spec", metavar="APP")
@click.argument("task_name", metavar="TASK")
@click.argument("json_args", metavar="[JSON_ARGS]", required=False, default="[]")
@click.option("--kwargs", "json_kwargs", default="{}", metavar="JSON", help="Keyword arguments.")
@click.option("--delay", type=click.FloatRange(0), default=None, help="Seconds to wait first.")
@click.option("--key", default=None, help="Unique key: a live job with it is returned instead.")
@click.option("--priority", type=int, default=None, help="Larger runs first.")
@click.option("--queue", default=None)
@click.option("--wait", is_flag=True, help="Wait for the job to end and print its result.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0), default=None,
              help="With --wait: give up after this many seconds.")  # fmt: skip
@url_option
@json_option
@friendly
def enqueue(
    app_spec: str, task_name: str, json_args: str, json_kwargs: str, delay: float | None,
    key: str | None, priority: int | None, queue: str | None, wait: bool,
    timeout_s: float | None, url: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Enqueue TASK of APP with JSON_ARGS (a JSON array) and print the job id."""
    app = open_app(app_spec, url)
    task = app.tasks.get(task_name)
    if task is None:
        known = ", ".join(sorted(app.tasks)) or "none"
        raise Fail(f"{app_spec} has no task named {task_name!r} (known: {known})")
    args = parse_json(json_args, "JSON_ARGS", list)
    kwargs = parse_json(json_kwargs, "--kwargs", dict)
    job = task.options(delay=delay, key=key, priority=priority, queue=queue).enqueue(
        *args, **kwargs
    )
    if not wait:
        if as_json:
            emit_json(job_dict(job.record))
        else:
            click.echo(job.id)
        return
    try:
        job.result(timeout=timeout_s)
    except TimeoutError as exc:
        raise Fail(f"{exc} after {timeout_s}s; see it with: offload job {job.id}") from exc
    except OffloadError:
        pass
    record = job.refresh().record
    if as_json:
        emit_json(job_dict(record))
    elif record.state is JobState.SUCCEEDED:
        click.echo(record.result.decode() if record.result else "null")
    else:
        raise Fail(f"job {job.id} ended {record.state.value}: {_error_line(record)}")


def _error_line(record: JobRecord) -> str:
    return f"{record.error.type}: {record.error.message}" if record.error else "no error recorded"


@main.command("job")
@click.argument("job_id")
@url_option
@app_option
@json_option
@friendly
def job_command(job_id: str, url: str | None, app_spec: str | None, as_json: bool) -> None:
    """Show one job."""
    app = open_app(app_spec, url)
    found = app.backend.blocking.get(IdsParams(ids=[job_id]))
    if not found:
        raise Fail(f"no job with id {job_id!r} in {app.display_url} (check the id, or --url)")
    data = job_dict(found[0])
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
        out.print(f"[bold]{name}[/]: {escape(json.dumps(value, default=str))}", highlight=False)


@main.command()
@click.option("--state", "states", multiple=True, type=click.Choice(STATE_NAMES))
@click.option("--queue", default=None)
@click.option("--task", "task_name", default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--cursor", default=None, help="Id of the last job of the previous page.")
@url_option
@app_option
@json_option
@friendly
def jobs(
    states: tuple[str, ...], queue: str | None, task_name: str | None, limit: int,
    cursor: str | None, url: str | None, app_spec: str | None, as_json: bool,
) -> None:  # fmt: skip
    """List jobs, newest first."""
    app = open_app(app_spec, url)
    page = app.backend.blocking.query(
        QueryParams(
            filter=JobFilter(states=[JobState(s) for s in states], queue=queue, task=task_name),
            cursor=cursor,
            limit=limit,
        )
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
            Text(_error_line(record) if record.error else ""),
            record.id,
        )  # fmt: skip
    console().print(table)
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}")


@main.command()
@click.argument("app_spec", metavar="APP")
@url_option
@json_option
@friendly
def schedules(app_spec: str, url: str | None, as_json: bool) -> None:
    """The app's cron schedules, with their last and next run."""
    app = open_app(app_spec, url)
    entries = list(app.schedules.values())
    marks = app.backend.blocking.get_marks(MarkNamesParams(names=[s.mark for s in entries]))
    now_s = app.backend.blocking.now()
    rows = []
    for entry in entries:
        last = marks.get(entry.mark)
        last_s = float(last) if last is not None else None
        next_s = entry.next_due(max(now_s, last_s or now_s))
        zone = ZoneInfo(entry.tz)
        rows.append({
            "name": entry.name, "task": entry.task.name, "cron": entry.cron, "tz": entry.tz,
            "when": entry.describe(), "missed": entry.missed.value,
            "last_due": None if last_s is None else _local(last_s, zone),
            "next_run": None if next_s is None else _local(next_s, zone),
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


@main.command()
@url_option
@app_option
@json_option
@friendly
def stats(url: str | None, app_spec: str | None, as_json: bool) -> None:
    """Jobs per queue and state, and how far behind the workers are."""
    app = open_app(app_spec, url)
    rows = app.backend.blocking.stats()
    if as_json:
        emit_json([msgspec.to_builtins(r) for r in rows])
        return
    table = Table("queue", *STATE_NAMES, "oldest ready", "ended/min", box=None)
    for row in rows:
        age = "" if row.oldest_ready_age_s is None else f"{row.oldest_ready_age_s:.1f}s"
        table.add_row(
            Text(row.queue), *(str(row.counts.get(s, 0)) for s in STATE_NAMES), age,
            str(row.finished_last_minute),
        )  # fmt: skip
    console().print(table)


def _act(verb: str, job_ids: tuple[str, ...], url: str | None, app_spec: str | None,
         as_json: bool, target: JobState) -> None:  # fmt: skip
    app = open_app(app_spec, url)
    blocking = app.backend.blocking
    action = blocking.cancel if verb == "cancel" else blocking.retry
    found = {r.id: r for r in action(IdsParams(ids=list(job_ids)))}
    results = []
    failed = False
    for job_id in job_ids:
        record = found.get(job_id)
        if record is None:
            results.append({"id": job_id, "ok": False, "reason": "no such job"})
            failed = True
        else:
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
                why = item.get("reason") or f"cannot {verb} a job that is {item['state']}"
                click.echo(f"offload: error: {item['id']}: {why}", err=True)
    if failed:
        sys.exit(1)


@main.command()
@click.argument("job_ids", nargs=-1, required=True, metavar="ID...")
@url_option
@app_option
@json_option
@friendly
def retry(job_ids: tuple[str, ...], url: str | None, app_spec: str | None, as_json: bool) -> None:
    """Queue dead or cancelled jobs again."""
    _act("retry", job_ids, url, app_spec, as_json, JobState.QUEUED)


@main.command()
@click.argument("job_ids", nargs=-1, required=True, metavar="ID...")
@url_option
@app_option
@json_option
@friendly
def cancel(job_ids: tuple[str, ...], url: str | None, app_spec: str | None, as_json: bool) -> None:
    """Cancel jobs that have not ended (a running job's task is told)."""
    _act("cancel", job_ids, url, app_spec, as_json, JobState.CANCELLED)


@main.command()
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
    """Delete jobs in the given states."""
    chosen = [JobState(s) for s in states]
    live = [s.value for s in chosen if not s.is_terminal]
    if live and not yes:
        raise Fail(
            f"purging {', '.join(live)} jobs deletes work not yet done; add --yes to confirm"
        )
    app = open_app(app_spec, url)
    deleted = app.backend.blocking.purge(PurgeParams(states=chosen, queue=queue))
    if as_json:
        emit_json({"deleted": deleted})
    else:
        click.echo(f"deleted {deleted} job(s)")


@main.command()
@url_option
@app_option
@json_option
@friendly
def migrate(url: str | None, app_spec: str | None, as_json: bool) -> None:
    """Create or upgrade the store's schema (first use also does, unless disabled)."""
    app = open_app(app_spec, url)
    version = app.backend.blocking.migrate()
    if as_json:
        emit_json({"url": app.display_url, "schema_version": version})
    else:
        click.echo(f"{app.display_url}: schema version {version}")


@main.command()
@click.option("--jobs", "job_count", default=3000, show_default=True, type=click.IntRange(1))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 32))
@url_option
@friendly
def demo(job_count: int, workers: int, url: str | None) -> None:
    """Enqueue a few thousand jobs of several kinds and watch workers run them."""
    from offload.demo import run_demo

    run_demo(job_count=job_count, worker_count=workers, url=url or os.environ.get("OFFLOAD_URL"))


if __name__ == "__main__":  # pragma: no cover
    main()
