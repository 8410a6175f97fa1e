"""``offload serve`` (the HTTP API) and ``offload token`` (who may call it)."""

from __future__ import annotations

import os
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


def _need_web() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise Fail(
            f"offload serve needs the web extra: pip install 'offload[web]' ({exc})"
        ) from exc


@click.command()
@click.argument("app_spec", metavar="APP")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Server processes (jobs run in `offload worker`).")  # fmt: skip
@click.option("--public", "public", multiple=True, metavar="TASK",
              help="Also let clients start TASK (besides @app.task(public=True)).")  # fmt: skip
@click.option("--insecure-no-auth", is_flag=True,
              help="No tokens: every caller is an admin. Never on a network.")  # fmt: skip
@click.option("--dev-smtp", "dev_smtp", is_flag=True,
              help="Receive mail here and show it at /dev/outbox (development only).")  # fmt: skip
@click.option("--dev-smtp-port", default=8025, show_default=True, type=click.IntRange(1, 65535))
@click.option("--forwarded-allow-ips", default=None, metavar="IPS",
              help="Trust X-Forwarded-Proto/For from these proxy addresses (comma-separated): "
                   "behind a TLS proxy, cookies are then Secure.")  # fmt: skip
@click.option(
    "--log-level", default="info", show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)  # fmt: skip
@url_option
@friendly
def serve(
    app_spec: str, host: str, port: int, workers: int, public: tuple[str, ...],
    insecure_no_auth: bool, dev_smtp: bool, dev_smtp_port: int, forwarded_allow_ips: str | None,
    log_level: str, url: str | None,
) -> None:  # fmt: skip
    """Serve the HTTP API of APP (module:attribute) and its dashboard at /: start jobs, follow
    them live, search and manage them, fetch results."""
    _need_web()
    import uvicorn

    from offload.web import create_app
    from offload.web.factory import APP_ENV, DEV_SMTP_ENV, INSECURE_ENV, PUBLIC_ENV

    app = open_app(app_spec, url)
    create_app(app, public=public, auth=not insecure_no_auth)  # every mistake before binding
    if insecure_no_auth:
        click.echo(
            "offload: WARNING: serving without authentication (--insecure-no-auth): anyone "
            "who can reach this port can start, read and delete every job",
            err=True,
        )
    os.environ[APP_ENV] = app_spec
    os.environ[PUBLIC_ENV] = ",".join(public)
    os.environ[INSECURE_ENV] = "1" if insecure_no_auth else ""
    os.environ[DEV_SMTP_ENV] = str(dev_smtp_port) if dev_smtp else ""
    if dev_smtp:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise Fail("--dev-smtp shows every mail without a token: serve it on 127.0.0.1")
        if workers > 1:
            raise Fail("--dev-smtp keeps mail in one process: serve it with --workers 1")
        click.echo(
            f"offload: development outbox at http://{host}:{port}/dev/outbox; run workers "
            f"with OFFLOAD_SMTP_HOST=127.0.0.1 OFFLOAD_SMTP_PORT={dev_smtp_port} "
            "OFFLOAD_SMTP_SECURITY=none to send mail there",
            err=True,
        )
    if url:
        os.environ["OFFLOAD_URL"] = url
    click.echo(f"offload: serving {app_spec} ({app.display_url}) on http://{host}:{port}", err=True)
    if not insecure_no_auth and not app.admin.users():
        click.echo(
            f"offload: the dashboard at http://{host}:{port}/ needs a user to log in: "
            "offload user create NAME --owner OWNER --role admin",
            err=True,
        )
    sys.stderr.flush()
    uvicorn.run(
        "offload.web.factory:from_environment", factory=True, host=host, port=port,
        workers=workers, log_level=log_level.lower(), proxy_headers=bool(forwarded_allow_ips),
        forwarded_allow_ips=forwarded_allow_ips,
    )  # fmt: skip


@click.group()
def token() -> None:
    """API tokens: each belongs to an owner and has a role (admin, operator, submitter, viewer)."""


@token.command("create")
@click.option("--owner", required=True, help="Whose jobs the token sees and starts.")
@click.option("--role", type=click.Choice([r.value for r in Role]), default=Role.SUBMITTER.value,
              show_default=True)  # fmt: skip
@click.option("--name", default="", help="A note, to recognise it in `offload token list`.")
@url_option
@app_option
@json_option
@friendly
def create(owner: str, role: str, name: str, url: str | None, app_spec: str | None,
           as_json: bool) -> None:  # fmt: skip
    """Create a token and print it (this is its only copy: the store keeps a hash)."""
    made = open_app(app_spec, url).admin.create_token(owner=owner, role=role, name=name)
    if as_json:
        emit_json({"token": made.token, "id": made.info.id, "owner": made.info.owner,
                   "role": made.info.role.value, "name": made.info.name})  # fmt: skip
    else:
        click.echo(made.token)


@token.command("list")
@url_option
@app_option
@json_option
@friendly
def list_tokens(url: str | None, app_spec: str | None, as_json: bool) -> None:
    """Every token (never its secret), revoked ones too."""
    infos = open_app(app_spec, url).admin.tokens()
    rows = [{"id": i.id, "owner": i.owner, "role": i.role.value, "name": i.name,
             "created_at": iso(i.created_at), "revoked_at": iso(i.revoked_at)}
            for i in infos]  # fmt: skip
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "owner", "role", "name", "created", "revoked", box=None)
    for row in rows:
        table.add_row(*(Text(str(row[c] or "")) for c in (
            "id", "owner", "role", "name", "created_at", "revoked_at")))  # fmt: skip
    console().print(table)


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@url_option
@app_option
@friendly
def revoke(token_id: str, url: str | None, app_spec: str | None) -> None:
    """Stop the token ID working, on every server at once."""
    try:
        info = open_app(app_spec, url).admin.revoke_token(token_id)
    except LookupError as exc:
        raise Fail(f"{exc.args[0]} (see offload token list)") from exc
    click.echo(f"revoked {info.id} ({info.owner}, {info.role.value})")


COMMANDS = [serve, token]
