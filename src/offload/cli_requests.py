"""``offload requests``: the one-minute rule's report, from every process's counts."""

from __future__ import annotations

import re

import click
import msgspec
from rich.table import Table
from rich.text import Text

from offload.admin import RequestStats
from offload.cli_common import (
    Fail,
    console,
    emit_json,
    friendly,
    json_option,
    open_app,
    printable,
    url_option,
)
from offload.present import iso

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SPAN = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")


def span_s(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``2d``, ``1w`` in seconds."""
    found = _SPAN.fullmatch(text.strip().lower())
    if found is None or float(found[1]) <= 0:
        raise Fail(f"--since must be a span like 15m, 1h, 2d or 1w, got {text!r}")
    return float(found[1]) * _UNITS_S[found[2] or "s"]


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.1f} s"


@click.command()
@click.argument("app_spec", metavar="[APP]", required=False)
@click.option("--since", "since", default="1h", show_default=True,
              help="How far back: 15m, 1h, 2d, 1w (a week at most).")  # fmt: skip
@click.option("--name", default=None, metavar="NAME", help="Only this app name (the middleware's).")
@click.option("--check", is_flag=True, help="Exit 1 if any request took longer than its threshold.")
@url_option
@json_option
@friendly
def requests(app_spec: str | None, since: str, name: str | None, check: bool, url: str | None,
             as_json: bool) -> None:  # fmt: skip
    """HTTP requests timed by offload.requests, per app name: how many, how many over the
    threshold (the one-minute rule wants 0), duration percentiles and the slowest. APP
    (module:attribute) or --url names the store."""
    app = open_app(app_spec, url)
    now_s = app.store_now()
    found = app.admin.requests(since=now_s - span_s(since), until=now_s, app=name)
    if as_json:
        emit_json([msgspec.to_builtins(s) for s in found])
    elif not found:
        click.echo(f"no timed requests in the last {since} (wrap the web app in "
                   "offload.requests.RequestTimingASGI or RequestTimingWSGI)")  # fmt: skip
    else:
        _table(found)
    if check and any(s.over_threshold for s in found):
        raise SystemExit(1)


def _table(found: list[RequestStats]) -> None:
    table = Table("app", "requests", "over threshold", "p50", "p95", "p99", "max", "slowest",
                  box=None)  # fmt: skip
    for s in found:
        slow = s.slowest
        where = "" if slow is None else (
            f"{slow.method} {slow.path} at {(iso(slow.at_s) or '')[:19]} "
            f"(threshold {slow.threshold_s:g} s)"
        )  # fmt: skip
        over = Text(str(s.over_threshold), style="bold red" if s.over_threshold else "green")
        table.add_row(
            Text(printable(s.app)), str(s.requests), over, _ms(s.p50_ms), _ms(s.p95_ms),
            _ms(s.p99_ms), _ms(s.max_ms), Text(printable(where)),
        )  # fmt: skip
    console().print(table)


COMMANDS = [requests]
