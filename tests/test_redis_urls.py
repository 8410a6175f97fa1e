"""Every URL form redis-py accepts opens the Redis store, and no message or display URL
shows a password: redis://, ?db=, user:password@, a password option, unix:// sockets."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from offload import JobState, Offload
from offload.backends.base import BackendError
from offload.backends.redis import parse_redis_url
from servers import RedisServer
from test_cli import base_env

SECRET = "s3cr3t-pw"


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    """A server with a user 'alice' whose password is SECRET."""
    server = RedisServer().start()
    redis.Redis(host="127.0.0.1", port=server.port).acl_setuser(
        "alice", enabled=True, passwords=[f"+{SECRET}"], keys=["*"], channels=["*"],
        commands=["+@all"],
    )  # fmt: skip
    try:
        yield server
    finally:
        server.destroy()


def _round_trip(url: str) -> Offload:
    app = Offload(url)

    @app.task(name="echo")
    def echo(n: int) -> int:
        return n

    job = echo.enqueue(1)
    assert app.job(job.id).state is JobState.QUEUED
    return app


def _keys_in(server: RedisServer, db: int, prefix: str) -> list[Any]:
    raw = redis.Redis(host="127.0.0.1", port=server.port, db=db, username="alice", password=SECRET)
    return raw.keys(prefix + ":*")


@pytest.mark.parametrize(
    ("form", "db"),
    [
        ("redis://alice:{pw}@127.0.0.1:{port}/2?prefix={prefix}", 2),
        ("redis://alice:{pw}@127.0.0.1:{port}?db=3&prefix={prefix}", 3),
        ("redis://alice@127.0.0.1:{port}/4?password={pw}&prefix={prefix}", 4),
        ("unix://alice:{pw}@{sock}?db=5&prefix={prefix}", 5),
        ("unix://{sock}?db=6&username=alice&password={pw}&prefix={prefix}", 6),
    ],
)
def test_each_url_form_opens_the_store_and_masks_its_password(
    acl_server: RedisServer, form: str, db: int
) -> None:
    prefix = f"form{db}"
    url = form.format(pw=SECRET, port=acl_server.port, sock=acl_server.socket_path, prefix=prefix)
    app = _round_trip(url)
    assert SECRET not in app.display_url and "***" in app.display_url
    assert SECRET not in repr(app) and SECRET not in repr(parse_redis_url(url))
    app.close()
    assert _keys_in(acl_server, db, prefix), "the jobs went to another database"


def test_a_wrong_password_is_a_one_line_error_without_the_password(
    acl_server: RedisServer,
) -> None:
    url = f"unix://alice:wrong-{SECRET}@{acl_server.socket_path}?db=1"
    app = Offload(url)
    with pytest.raises(BackendError) as caught:
        app.backend.blocking.stats()
    assert SECRET not in str(caught.value)
    app.close()
    done = subprocess.run(
        [sys.executable, "-m", "offload", "--url", url, "stats"],
        env=base_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert SECRET not in done.stdout + done.stderr


def test_a_unix_url_keeps_its_path_for_redis_py() -> None:
    config = parse_redis_url("unix:///run/redis/redis.sock?db=1&prefix=p")
    assert config.url == "unix:///run/redis/redis.sock?db=1"
    assert config.prefix == "p"
    with pytest.raises(ValueError, match="must be a number"):
        parse_redis_url("redis://host:6379/zero")
