"""PostgreSQL URLs: offload's own options ride in the query string, the rest is libpq's.

The URL reaches libpq as written, less offload's options: rebuilding it lost the
``//`` of the Unix-socket forms (``postgresql:///mydb?host=/var/run/postgresql``).
libpq's own parser (through psycopg) checks it, so every form libpq takes works.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_plus

import psycopg

from offload.backends.urls import display_url


@dataclass(frozen=True)
class PgConfig:
    conninfo: str
    schema: str = "offload"
    migrate: bool = True
    listen: bool = True
    prepare: bool = True
    pool_max: int = 10
    poll_s: float = 1.0
    #: The deadline of every call: past it the connection is dropped and the call fails.
    timeout_s: float = 30.0


def parse_postgres_url(url: str) -> PgConfig:
    """Offload's own options ride in the query string; the rest goes to libpq untouched."""
    base, _, query = url.partition("?")
    ours: dict[str, str] = {}
    theirs: list[str] = []
    for piece in query.split("&") if query else []:
        name, _, value = piece.partition("=")
        if unquote_plus(name) in _OPTIONS:
            ours[unquote_plus(name)] = unquote_plus(value)
        elif piece:
            theirs.append(piece)
    schema = ours.get("schema", "offload")
    if not schema.replace("_", "").isalnum() or len(schema) > 40:
        raise ValueError(f"schema must be letters, digits and _ (at most 40), got {schema!r}")

    def flag(name: str, default: bool) -> bool:
        value = ours.get(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"URL option {name} must be true or false, got {value!r}")

    timeout_s = float(ours.get("timeout_s", 30.0))
    if not 0 < timeout_s < float("inf"):  # also NaN
        raise ValueError(f"URL option timeout_s must be a positive number, got {timeout_s!r}")
    conninfo = base + ("?" + "&".join(theirs) if theirs else "")
    try:
        psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        detail = str(exc).strip().replace(conninfo, display_url(conninfo))
        raise ValueError(f"bad PostgreSQL URL {display_url(url)}: {detail}") from None
    return PgConfig(
        conninfo=conninfo, schema=schema, migrate=flag("migrate", True),
        listen=flag("listen", True), prepare=flag("prepare", True),
        pool_max=int(ours.get("pool_max", 10)), poll_s=float(ours.get("poll_s", 1.0)),
        timeout_s=timeout_s,
    )  # fmt: skip


_OPTIONS = {"schema", "migrate", "listen", "prepare", "pool_max", "poll_s", "timeout_s"}
