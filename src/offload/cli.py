"""The ``offload`` command. Every failure is one line that says what to do, never a traceback."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from offload.cli_common import (
    Fail,
    app_option,
    emit_json,
    error_line,
    friendly,
    json_option,
    open_app,
    parse_json,
    url_option,
)
from offload.cli_manage import COMMANDS as JOB_COMMANDS
from offload.cli_queues import COMMANDS as QUEUE_COMMANDS
from offload.cli_requests import COMMANDS as REQUEST_COMMANDS
from offload.cli_users import COMMANDS as USER_COMMANDS
from offload.cli_web import COMMANDS as WEB_COMMANDS
from offload.errors import OffloadError
from offload.present import job_dict
from offload.states import JobState


class OneLineGroup(click.Group):
    """Usage mistakes too are one line (what is wrong, and where the help is), not Click's
    usage block: a script's log shows the reason, a person sees what to type."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.UsageError as exc:
            where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            click.echo(f"offload: error: {exc.format_message()}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("offload: aborted", err=True)
            sys.exit(1)


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option(
    "--prefetch",
    type=click.IntRange(0, 100_000),
    default=None,
    help="Jobs claimed ahead of free slots (default: about 20 ms of work, at most 4 per slot).",
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
    app_spec: str, queues: str | None, concurrency: int, pool: str, prefetch: int | None,
    burst: bool, grace_s: float, log_level: str, url: str | None,
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
        burst=burst, grace_s=grace_s, app_spec=app_spec, prefetch=prefetch,
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
            emit_json(job_dict(job.record, task=task))
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
        emit_json(job_dict(record, task=task))
    elif record.state is JobState.SUCCEEDED:
        if task.defaults.secret_result:
            click.echo('"[redacted]"')
        else:
            click.echo(record.result.decode() if record.result else "null")
    else:
        raise Fail(f"job {job.id} ended {record.state.value}: {error_line(record)}")


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


for command in [*JOB_COMMANDS, *QUEUE_COMMANDS, *WEB_COMMANDS, *USER_COMMANDS, *REQUEST_COMMANDS]:
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    main()
