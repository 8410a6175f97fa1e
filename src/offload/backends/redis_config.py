"""The Redis URL: offload's options in its query string, the rest handed to redis-py."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from offload.backends.redis_keys import Keyspace

CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0
#: The longest one BLPOP blocks; a wait asked to last longer returns early (work is
#: checked again), so a connection that died silently is noticed within it.
WAIT_MAX_S = 30.0
#: How long past its BLPOP's timeout a wait gives the server's answer before giving up.
WAIT_SLACK_S = 5.0
_OPTIONS = {"prefix", "pool_max"}
#: What redis-py reads from a URL's query string (connection and TLS settings).
_REDIS_PY_OPTIONS = {
    "db", "health_check_interval", "protocol", "socket_keepalive", "socket_read_size",
    "ssl_check_hostname", "ssl_min_version", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path",
    "ssl_ca_data", "ssl_certfile", "ssl_keyfile", "ssl_password", "ssl_ciphers", "client_name",
    "username", "password",  # unix://user@/path/redis.sock?password=... as redis-py documents
}  # fmt: skip


@dataclass(frozen=True)
class RedisConfig:
    url: str = field(repr=False)  # what redis-py gets: our options removed; may hold a password
    prefix: str = "offload"
    pool_max: int = 50


def parse_redis_url(url: str) -> RedisConfig:
    """Offload's options ride in the query string; redis-py's own go to it untouched."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _OPTIONS:
            ours[name] = value
        elif name in _REDIS_PY_OPTIONS:
            theirs.append((name, value))
        else:
            known = ", ".join(sorted(_OPTIONS | _REDIS_PY_OPTIONS))
            raise ValueError(f"unknown option {name!r} in the Redis URL; known options: {known}")
    database = parts.path.strip("/")
    if parts.scheme.lower() != "unix" and database and not database.isdigit():
        raise ValueError(
            f"the Redis URL's database must be a number, as in redis://host:6379/0 (or "
            f"?db=0), got {database!r}"
        )
    prefix = Keyspace(ours.get("prefix", "offload")).prefix
    try:
        pool_max = int(ours.get("pool_max", "50"))
    except ValueError:
        pool_max = 0
    if pool_max < 2:
        raise ValueError(
            f"URL option pool_max must be an integer of at least 2, got {ours['pool_max']!r}"
        )
    # Not urlunsplit: it would turn unix:///path/redis.sock into unix:/path/redis.sock.
    base = url.split("#", 1)[0].split("?", 1)[0]
    clean = f"{base}?{urlencode(theirs)}" if theirs else base
    return RedisConfig(url=clean, prefix=prefix, pool_max=pool_max)


def _tcp_keepalive() -> dict[str, Any]:
    """TCP keepalive probes after 10 s of silence, every 5 s, 3 of them: a peer that is
    gone is noticed by the kernel even on a connection that waits for nothing."""
    wanted = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}
    options = {getattr(socket, k): v for k, v in wanted.items() if hasattr(socket, k)}
    return {"socket_keepalive": True, "socket_keepalive_options": options}


def client_options(config: RedisConfig, blocking: bool) -> dict[str, Any]:
    # No silent retries: a retried script whose first reply was lost would run twice.
    # Workers and callers retry at their own level, where that is safe.
    # The waiting connection's reads last up to a BLPOP's timeout, never longer than
    # WAIT_MAX_S, so its socket timeout comes a little after that.
    return {
        "decode_responses": False,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": WAIT_MAX_S + 2 * WAIT_SLACK_S if blocking else COMMAND_TIMEOUT_S,
        "health_check_interval": WAIT_MAX_S if blocking else 0,
        "max_connections": config.pool_max,
    } | ({} if config.url.lower().startswith("unix:") else _tcp_keepalive())


def async_client(config: RedisConfig, blocking: bool = False) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(
        config.url, retry=AsyncRetry(NoBackoff(), 0), **client_options(config, blocking)
    )
