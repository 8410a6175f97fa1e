"""Dashboard users (``offload.users``) through ``app.admin``, ``app.admin.aio`` and
``offload user``, on a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import argon2
import msgspec
import pytest
from click.testing import CliRunner

from offload import Offload
from offload.admin import accounts
from offload.backends.base import MarkNamesParams, MarkParams
from offload.cli import main as cli_main
from offload.errors import ConfigurationError, InvalidQuery
from offload.ops import run_sync
from offload.users import UserInfo, _hasher, add_user

GOOD = "correct horse battery"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/jobs.db"


@pytest.fixture
def app(url: str) -> Iterator[Offload]:
    application = Offload(url)
    yield application
    application.close()


def stored(app: Offload, name: str) -> UserInfo:
    marks = app.backend.blocking.get_marks(MarkNamesParams(names=[f"user:{name}"]))
    return msgspec.json.decode(marks[f"user:{name}"], type=UserInfo)


def test_create_then_read_without_the_hash(app: Offload) -> None:
    made = app.admin.create_user(name="alice@example.com", owner="acme", role="operator",
                                 password=GOOD)  # fmt: skip
    assert (made.name, made.owner, made.role.value) == ("alice@example.com", "acme", "operator")
    assert made.password_hash == "" and made.session_version == 0 and made.active
    assert stored(app, "alice@example.com").password_hash.startswith("$argon2id$")
    assert GOOD not in stored(app, "alice@example.com").password_hash
    assert app.admin.user("alice@example.com") == made
    assert app.admin.user("nobody") is None
    assert app.admin.user("not a name!") is None
    app.admin.create_user(name="bob", owner="acme", role="viewer", password=GOOD + "!")
    listed = app.admin.users()
    assert [u.name for u in listed] == ["alice@example.com", "bob"]
    assert all(u.password_hash == "" for u in listed)


def test_duplicate_and_bad_input_are_refused(app: Offload) -> None:
    app.admin.create_user(name="alice", owner="acme", role="admin", password=GOOD)
    with pytest.raises(InvalidQuery, match="a user named alice exists"):
        app.admin.create_user(name="alice", owner="other", role="viewer", password=GOOD)
    with pytest.raises(ConfigurationError, match="at least 10 characters"):
        app.admin.create_user(name="bob", owner="acme", role="admin", password="123456789")
    with pytest.raises(ConfigurationError, match="at most 1000 characters"):
        app.admin.create_user(name="bob", owner="acme", role="admin", password="x" * 1001)
    for bad in ("", "a" * 65, "bob smith", "bob/..", "bøb"):
        with pytest.raises(ConfigurationError, match="user name"):
            app.admin.create_user(name=bad, owner="acme", role="admin", password=GOOD)
    with pytest.raises(ConfigurationError, match="unknown role"):
        app.admin.create_user(name="bob", owner="acme", role="root", password=GOOD)
    with pytest.raises(ConfigurationError, match="owner"):
        app.admin.create_user(name="bob", owner="", role="admin", password=GOOD)
    assert [u.name for u in app.admin.users()] == ["alice"]
    assert stored(app, "alice").owner == "acme"  # the refused duplicate changed nothing


def test_verify_right_wrong_unknown_and_disabled(
    app: Offload, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.admin.create_user(name="carol", owner="acme", role="submitter", password=GOOD)
    found = app.admin.verify_password("carol", GOOD)
    assert found is not None and found.name == "carol" and found.password_hash == ""
    assert app.admin.verify_password("carol", GOOD.upper()) is None
    assert app.admin.verify_password("carol", "") is None
    assert app.admin.verify_password("carol", "x" * 100_000) is None
    checks: list[str] = []
    real = argon2.PasswordHasher.verify

    def counting(self: argon2.PasswordHasher, hash: str, password: str | bytes) -> bool:
        checks.append(hash)
        return real(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counting)
    assert app.admin.verify_password("dave", GOOD) is None
    assert len(checks) == 1  # an unknown name costs an argon2 check too
    disabled = app.admin.disable_user("carol")
    assert not disabled.active and disabled.session_version == 1
    assert app.admin.verify_password("carol", GOOD) is None
    assert app.admin.disable_user("carol").session_version == 1  # twice is no error
    with pytest.raises(LookupError, match="no user named 'dave'"):
        app.admin.disable_user("dave")
    with pytest.raises(LookupError, match="no user named 'dave'"):
        app.admin.set_password("dave", GOOD)


def test_password_change_ends_sessions(app: Offload) -> None:
    app.admin.create_user(name="erin", owner="acme", role="viewer", password=GOOD)
    changed = app.admin.set_password("erin", "a brand new secret")
    assert changed.session_version == 1 and changed.password_hash == ""
    assert app.admin.verify_password("erin", GOOD) is None
    verified = app.admin.verify_password("erin", "a brand new secret")
    assert verified is not None and verified.session_version == 1
    with pytest.raises(ConfigurationError, match="at least 10"):
        app.admin.set_password("erin", "short")
    assert app.admin.user("erin").session_version == 1  # type: ignore[union-attr]


def test_damaged_marks_authenticate_nobody(app: Offload) -> None:
    app.admin.create_user(name="frank", owner="acme", role="admin", password=GOOD)
    put = app.backend.blocking.set_mark
    put(MarkParams(name="user:frank", value="{not json",
                   expected=app.backend.blocking.get_marks(
                       MarkNamesParams(names=["user:frank"]))["user:frank"]))  # fmt: skip
    blank = UserInfo(name="grace", owner="acme", role="admin", created_at=0.0)
    put(MarkParams(name="user:grace", value=msgspec.json.encode(blank).decode()))
    put(MarkParams(name="users", value='["frank", "grace"]',
                   expected='["frank"]'))  # fmt: skip
    assert app.admin.verify_password("frank", GOOD) is None
    assert app.admin.verify_password("grace", "") is None
    assert app.admin.verify_password("grace", GOOD) is None
    assert app.admin.user("frank") is None
    assert [u.name for u in app.admin.users()] == ["grace"]
    with pytest.raises(InvalidQuery, match="exists"):
        app.admin.create_user(name="frank", owner="acme", role="admin", password=GOOD)
    put(MarkParams(name="users", value="oops", expected='["frank", "grace"]'))
    assert app.admin.users() == []  # a damaged list hides users, breaks nothing


def test_old_parameters_are_rehashed_on_login(app: Offload) -> None:
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(GOOD)
    run_sync(app.backend.blocking, add_user("heidi", "acme", "viewer", weak))
    assert app.admin.verify_password("heidi", GOOD) is not None
    now = stored(app, "heidi")
    assert now.password_hash != weak and not _hasher().check_needs_rehash(now.password_hash)
    assert now.session_version == 0  # a rehash ends no session
    assert app.admin.verify_password("heidi", GOOD) is not None


def test_async_face_hashes_off_the_event_loop(
    app: Offload, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []

    def spy(fn: Any) -> Any:
        def wrapped(*args: Any) -> Any:
            threads.append(threading.get_ident())
            return fn(*args)

        return wrapped

    monkeypatch.setattr(accounts, "hash_password", spy(accounts.hash_password))
    monkeypatch.setattr(accounts, "check_hash", spy(accounts.check_hash))

    async def scenario() -> list[UserInfo | None]:
        aio = app.admin.aio
        await aio.create_user(name="ivan", owner="acme", role="viewer", password=GOOD)
        right = await aio.verify_password("ivan", GOOD)
        wrong = await aio.verify_password("ivan", "not the password")
        await aio.set_password("ivan", "the second password")
        old = await aio.verify_password("ivan", GOOD)
        new = await aio.verify_password("ivan", "the second password")
        await aio.disable_user("ivan")
        gone = await aio.verify_password("ivan", "the second password")
        listed = await aio.users()
        return [right, wrong, old, new, gone, await aio.user("ivan"), *listed]

    right, wrong, old, new, gone, ivan, *listed = asyncio.run(scenario())
    assert right is not None and right.password_hash == "" and wrong is None
    assert old is None and new is not None and new.session_version == 1 and gone is None
    assert ivan is not None and ivan.session_version == 2 and not ivan.active
    assert [u.password_hash for u in listed if u] == [""]
    assert len(threads) == 7 and threading.get_ident() not in threads


def test_argon2_is_needed_only_for_logins(monkeypatch: pytest.MonkeyPatch, app: Offload) -> None:
    code = "import sys, offload, offload.admin, offload.users; print('argon2' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    _hasher.cache_clear()
    monkeypatch.setitem(sys.modules, "argon2", None)
    try:
        with pytest.raises(ConfigurationError, match=r"install offload\[web\]"):
            app.admin.create_user(name="judy", owner="acme", role="viewer", password=GOOD)
    finally:
        _hasher.cache_clear()


def _cli(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(cli_main, list(args), input=stdin)


def test_cli_create_list_password_disable(url: str) -> None:
    made = _cli("user", "create", "kim", "--owner", "acme", "--role", "operator",
                "--password-stdin", "--url", url, stdin=GOOD + "\n")  # fmt: skip
    assert made.exit_code == 0, made.output
    assert made.stdout.strip() == "created user kim (acme, operator)"
    listed = _cli("user", "list", "--json", "--url", url)
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["owner"], r["role"], r["disabled_at"]) for r in rows] == [
        ("kim", "acme", "operator", None)
    ]
    assert "hash" not in listed.stdout and "argon2" not in listed.stdout
    with closing(Offload(url)) as app:
        assert app.admin.verify_password("kim", GOOD) is not None
    # typed twice at the hidden prompt; a short one is refused and asked again
    changed = _cli("user", "password", "kim", "--url", url,
                   stdin="short\nanother secret\nanother secret\n")  # fmt: skip
    assert changed.exit_code == 0, changed.output
    assert "at least 10 characters" in changed.output
    assert "another secret" not in changed.output  # never echoed
    with closing(Offload(url)) as app:
        assert app.admin.verify_password("kim", "another secret") is not None
    table = _cli("user", "list", "--url", url)
    assert "kim" in table.stdout and "acme" in table.stdout
    assert _cli("user", "disable", "kim", "--url", url).exit_code == 0
    with closing(Offload(url)) as app:
        assert app.admin.verify_password("kim", "another secret") is None
        info = app.admin.user("kim")
        assert info is not None and info.session_version == 2 and not info.active
    enabled = _cli("user", "enable", "kim", "--url", url)
    assert enabled.exit_code == 0 and enabled.stdout.strip() == "enabled kim (acme, operator)"
    with closing(Offload(url)) as app:
        assert app.admin.verify_password("kim", "another secret") is not None
        assert app.admin.user("kim").session_version == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["create", "lee", "--owner", "acme", "--role", "viewer", "--password-stdin"], "short\n",
         "a password needs at least 10 characters"),
        (["create", "lee lee", "--owner", "acme", "--role", "viewer", "--password-stdin"],
         GOOD + "\n", "a user name is 1 to 64"),
        (["create", "kim", "--owner", "acme", "--role", "viewer", "--password-stdin"],
         GOOD + "\n", "a user named kim exists"),
        (["password", "nobody", "--password-stdin"], GOOD + "\n", "no user named 'nobody'"),
        (["disable", "nobody"], None, "no user named 'nobody'"),
        (["enable", "nobody"], None, "no user named 'nobody'"),
    ],
)  # fmt: skip
def test_cli_errors_are_one_line(url: str, args: list[str], stdin: str | None,
                                 message: str) -> None:  # fmt: skip
    with closing(Offload(url)) as app:
        app.admin.create_user(name="kim", owner="acme", role="admin", password=GOOD)
    done = _cli("user", *args, "--url", url, stdin=stdin)
    assert done.exit_code == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("offload: error: ") and message in done.stderr
    assert "Traceback" not in done.output
