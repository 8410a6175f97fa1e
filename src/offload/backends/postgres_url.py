"""PostgreSQL URLs: offload's own options ride in the query string, the rest is libpq's."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


@dataclass(frozen=True)
class PgConfig:
    conninfo: str
    schema: str = "offload"
    migrate: bool = True
    listen: bool = True
    prepare: bool = True
    pool_max: int = 10
    poll_s: float = 1.0


def parse_postgres_url(url: str) -> PgConfig:
    """Offload's own options ride in the query string; the rest goes to libpq untouched."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _OPTIONS:
            ours[name] = value
        else:
            theirs.append((name, value))
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

    conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(theirs), ""))
    return PgConfig(
        conninfo=conninfo, schema=schema, migrate=flag("migrate", True),
        listen=flag("listen", True), prepare=flag("prepare", True),
        pool_max=int(ours.get("pool_max", 10)), poll_s=float(ours.get("poll_s", 1.0)),
    )  # fmt: skip


_OPTIONS = {"schema", "migrate", "listen", "prepare", "pool_max", "poll_s"}
