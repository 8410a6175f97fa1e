"""``offload user``: who may log in to the dashboard.

Passwords never go on the command line, where ``ps`` and shell history would keep them:
they are typed twice at a hidden prompt, or read as one line from standard input
(``--password-stdin``) by scripts.
"""

from __future__ import annotations

import sys

import click
from rich.table import Table
from rich.text import Text

from offload.cli_common import (
    Fail,
    app_option,
    console,
    emit_json,
    friendly,
    json_option,
    open_app,
    url_option,
)
from offload.present import iso
from offload.tokens import Role
from offload.users import UserInfo, check_new_password, check_user

password_stdin_option = click.option(
    "--password-stdin", "password_stdin", is_flag=True,
    help="Read the password as one line from standard input (for scripts).",
)  # fmt: skip


def _checked(text: str) -> str:
    try:
        return check_new_password(text)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc  # the prompt says so and asks again


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.removesuffix("\n").removesuffix("\r")
    password: str = click.prompt(
        "Password", hide_input=True, confirmation_prompt=True, value_proc=_checked
    )
    return password


def _row(info: UserInfo) -> dict[str, object]:
    return {"name": info.name, "owner": info.owner, "role": info.role.value,
            "created_at": iso(info.created_at), "disabled_at": iso(info.disabled_at),
            "session_version": info.session_version}  # fmt: skip


@click.group()
def user() -> None:
    """Dashboard users: each logs in with a password, belongs to an owner and has a role."""


@user.command("create")
@click.argument("name")
@click.option("--owner", required=True, help="Whose jobs the user sees and starts.")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]),
              help="admin, operator, submitter or viewer.")  # fmt: skip
@password_stdin_option
@url_option
@app_option
@json_option
@friendly
def create(name: str, owner: str, role: str, password_stdin: bool, url: str | None,
           app_spec: str | None, as_json: bool) -> None:  # fmt: skip
    """Create the user NAME (letters, digits, '.', '-', '_', '@'), asking for a password."""
    app = open_app(app_spec, url)
    check_user(name, owner, role)  # every mistake before the password is asked for
    if app.admin.user(name) is not None:
        raise Fail(f"a user named {name} exists (see offload user list)")
    password = read_password(password_stdin)
    info = app.admin.create_user(name=name, owner=owner, role=role, password=password)
    if as_json:
        emit_json(_row(info))
    else:
        click.echo(f"created user {info.name} ({info.owner}, {info.role.value})")


@user.command("list")
@url_option
@app_option
@json_option
@friendly
def list_users(url: str | None, app_spec: str | None, as_json: bool) -> None:
    """Every user (never a password or its hash), disabled ones too."""
    rows = [_row(i) for i in open_app(app_spec, url).admin.users()]
    if as_json:
        emit_json(rows)
        return
    table = Table("name", "owner", "role", "created", "disabled", box=None)
    for row in rows:
        table.add_row(*(Text(str(row[c] or "")) for c in (
            "name", "owner", "role", "created_at", "disabled_at")))  # fmt: skip
    console().print(table)


@user.command("password")
@click.argument("name")
@password_stdin_option
@url_option
@app_option
@friendly
def password(name: str, password_stdin: bool, url: str | None, app_spec: str | None) -> None:
    """Give NAME a new password; their open sessions end."""
    admin = open_app(app_spec, url).admin
    if admin.user(name) is None:  # before asking for a password that would go nowhere
        raise Fail(f"no user named {name!r} (see offload user list)")
    try:
        info = admin.set_password(name, read_password(password_stdin))
    except LookupError as exc:
        raise Fail(f"{exc.args[0]} (see offload user list)") from exc
    click.echo(f"changed the password of {info.name}; their sessions have ended")


@user.command("disable")
@click.argument("name")
@url_option
@app_option
@friendly
def disable(name: str, url: str | None, app_spec: str | None) -> None:
    """Stop NAME logging in, and end their sessions, on every server at once."""
    try:
        info = open_app(app_spec, url).admin.disable_user(name)
    except LookupError as exc:
        raise Fail(f"{exc.args[0]} (see offload user list)") from exc
    click.echo(f"disabled {info.name} ({info.owner}, {info.role.value})")


@user.command("enable")
@click.argument("name")
@url_option
@app_option
@friendly
def enable(name: str, url: str | None, app_spec: str | None) -> None:
    """Let a disabled NAME log in again (with their password as it was)."""
    try:
        info = open_app(app_spec, url).admin.enable_user(name)
    except LookupError as exc:
        raise Fail(f"{exc.args[0]} (see offload user list)") from exc
    click.echo(f"enabled {info.name} ({info.owner}, {info.role.value})")


COMMANDS = [user]
