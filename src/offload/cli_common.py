"""What every ``offload`` command shares: one-line failures, options, output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from offload.app import DEFAULT_URL, Offload
from offload.backends.base import BackendError
from offload.errors import OffloadError
from offload.loader import load_app
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


def error_line(record: JobRecord) -> str:
    if record.error is None:
        return "no error recorded"
    return printable(f"{record.error.type}: {record.error.message}")


def printable(text: str, keep: str = "") -> str:
    """``text`` with control characters written as escapes: a job's error or argument
    must not move the cursor, clear the screen or retitle the terminal it is shown in."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() or c in keep else c.encode("unicode_escape").decode("ascii")
        for c in text
    )
