"""Dashboard users: a name, an owner, a role and a password, kept in the store as marks.

As with tokens, every server asks the store, so a user made on one machine logs in on all
and a disabled one is out everywhere at once. Each user is a mark (``user:<name>``), the
list of names another (``users``), changed by compare-and-set. People choose passwords,
so they get argon2, slow on purpose; ``session_version`` goes up when the password changes
or the user is disabled, which ends older sessions. Hashing is kept apart from the store
calls so an async caller can run it off its event loop; argon2 is imported only when used.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import msgspec

from offload.backends.base import MarkNamesParams, MarkParams
from offload.bounds import check_owner
from offload.errors import ConfigurationError, InvalidQuery
from offload.ops import Op
from offload.tokens import Role, check_role

if TYPE_CHECKING:
    from argon2 import PasswordHasher

_INDEX = "users"
_CAS_TRIES = 20
_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MIN_PASSWORD = 10
MAX_PASSWORD = 1000
_NEEDS_ARGON2 = "install offload[web] for dashboard logins (argon2-cffi)"
T = TypeVar("T")


class UserInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A user as stored; ``password_hash`` is blank wherever users are listed or shown."""

    name: str
    owner: str
    role: Role
    created_at: float
    disabled_at: float | None = None
    password_hash: str = ""
    #: Goes up when the password changes or the user is disabled: older sessions end.
    session_version: int = 0

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@functools.cache
def _hasher() -> PasswordHasher:
    try:
        from argon2 import PasswordHasher
    except ImportError:
        raise ConfigurationError(_NEEDS_ARGON2) from None
    return PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash no password matches, checked for unknown names so they take as long."""
    return _hasher().hash(secrets.token_urlsafe(32))


def _mark(name: str) -> str:
    return "user:" + name


def _valid_name(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def check_user(name: str, owner: str, role: str | Role) -> tuple[str, str, Role]:
    """A new user's name, owner and role, or a ``ConfigurationError`` that says why not."""
    if not _valid_name(name):
        raise ConfigurationError(
            f"a user name is 1 to 64 letters, digits, '.', '-', '_' or '@', got {name!r:.80}"
        )
    return name, check_owner(owner), check_role(role)


def check_new_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ConfigurationError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ConfigurationError(f"a password may have at most {MAX_PASSWORD} characters")
    return password


def hash_password(password: str) -> str:
    """The argon2 hash of an acceptable password (CPU-heavy: keep it off event loops)."""
    return _hasher().hash(check_new_password(password))


def check_hash(info: UserInfo | None, password: str) -> tuple[bool, str | None]:
    """Whether ``password`` is the active user's, and a new hash if argon2's parameters
    changed since it was made (CPU-heavy). Unknown users cost one argon2 check too."""
    from argon2.exceptions import InvalidHashError, VerificationError

    if not isinstance(password, str) or len(password) > MAX_PASSWORD:
        return False, None
    hasher = _hasher()
    try:
        hasher.verify(info.password_hash if info else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False, None
    if info is None or not info.active:
        return False, None
    rehashed = hasher.hash(password) if hasher.check_needs_rehash(info.password_hash) else None
    return True, rehashed


def _decode(raw: str | None, kind: type[T]) -> T | None:
    """A mark's value; None if absent or damaged (a damaged user authenticates nobody)."""
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def add_user(name: str, owner: str, role: str | Role, password_hash: str) -> Op[UserInfo]:
    """Store a new user whose password is already hashed (see ``hash_password``)."""
    name, owner, role = check_user(name, owner, role)
    now_s: float = yield ("now", None)
    info = UserInfo(name=name, owner=owner, role=role, created_at=now_s,
                    password_hash=password_hash)  # fmt: skip
    params = MarkParams(name=_mark(name), value=msgspec.json.encode(info).decode())
    if not (yield ("set_mark", params)):
        raise InvalidQuery(f"a user named {name} exists")
    yield from _add_to_index(name)
    return info


def create_user(name: str, owner: str, role: str | Role, password: str) -> Op[UserInfo]:
    check_user(name, owner, role)  # cheap mistakes before the slow hash
    return (yield from add_user(name, owner, role, hash_password(password)))


def _add_to_index(name: str) -> Op[None]:
    for _ in range(_CAS_TRIES):
        marks: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[_INDEX]))
        current = marks.get(_INDEX)
        names = _decode(current, list[str]) or []
        if name in names:
            return
        value = msgspec.json.encode([*names, name]).decode()
        if (yield ("set_mark", MarkParams(name=_INDEX, value=value, expected=current))):
            return
    raise InvalidQuery("the user list kept changing under this call; try again")


def list_users() -> Op[list[UserInfo]]:
    marks: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[_INDEX]))
    names = _decode(marks.get(_INDEX), list[str]) or []
    if not names:
        return []
    found: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[_mark(n) for n in names]))
    infos = [_decode(found.get(_mark(n)), UserInfo) for n in names]
    return [i for i in infos if i is not None]


def get_user(name: str) -> Op[UserInfo | None]:
    """The user, or None (unknown, malformed name or damaged mark: never an error)."""
    if not _valid_name(name):
        return None
    marks: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[_mark(name)]))
    return _decode(marks.get(_mark(name)), UserInfo)


def _change(name: str, edit: Callable[[UserInfo, float], UserInfo | None]) -> Op[UserInfo]:
    """Apply ``edit`` (None: no change) by compare-and-set; ``LookupError`` if unknown."""
    if not _valid_name(name):
        raise LookupError(f"no user named {name!r:.80}")
    for _ in range(_CAS_TRIES):
        marks: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[_mark(name)]))
        info = _decode(current := marks.get(_mark(name)), UserInfo)
        if info is None:
            raise LookupError(f"no user named {name!r}")
        now_s: float = yield ("now", None)
        changed = edit(info, now_s)
        if changed is None:
            return info
        value = msgspec.json.encode(changed).decode()
        if (yield ("set_mark", MarkParams(name=_mark(name), value=value, expected=current))):
            return changed
    raise InvalidQuery("the user kept changing under this call; try again")


def replace_hash(name: str, password_hash: str) -> Op[UserInfo]:
    """Give the user a new (already hashed) password; their sessions end."""
    return _change(name, lambda info, _: msgspec.structs.replace(
        info, password_hash=password_hash, session_version=info.session_version + 1))  # fmt: skip


def set_password(name: str, password: str) -> Op[UserInfo]:
    return (yield from replace_hash(name, hash_password(password)))


def disable_user(name: str) -> Op[UserInfo]:
    """Disable a user (``LookupError`` if unknown): no login, sessions end; twice is no error."""

    def edit(info: UserInfo, now_s: float) -> UserInfo | None:
        if not info.active:
            return None
        return msgspec.structs.replace(info, disabled_at=now_s,
                                       session_version=info.session_version + 1)  # fmt: skip

    return (yield from _change(name, edit))


def enable_user(name: str) -> Op[UserInfo]:
    """Let a disabled user log in again (``LookupError`` if unknown); no error if enabled."""

    def edit(info: UserInfo, _: float) -> UserInfo | None:
        return None if info.active else msgspec.structs.replace(info, disabled_at=None)

    return (yield from _change(name, edit))


def end_sessions(name: str) -> Op[UserInfo]:
    """End every open session of the user (logging out ends them all, on every device)."""
    return _change(name, lambda info, _: msgspec.structs.replace(
        info, session_version=info.session_version + 1))  # fmt: skip


def keep_rehash(info: UserInfo, rehashed: str | None) -> Op[UserInfo | None]:
    """After a right password: store its fresh hash if ``check_hash`` made one. None if the
    password changed or the user was disabled meanwhile (that login is refused)."""
    if rehashed is None:
        return info

    def edit(now: UserInfo, _: float) -> UserInfo | None:
        if now.password_hash != info.password_hash or not now.active:
            return None
        return msgspec.structs.replace(now, password_hash=rehashed)  # sessions stay

    try:
        stored = yield from _change(info.name, edit)
    except LookupError:
        return None
    return stored if stored.password_hash == rehashed else None


def verify_password(name: str, password: str) -> Op[UserInfo | None]:
    """The active user whose password this is, else None (unknown, disabled or wrong)."""
    info = yield from get_user(name)
    ok, rehashed = check_hash(info, password)
    if not ok or info is None:
        return None
    return (yield from keep_rehash(info, rehashed))


def public(infos: Sequence[UserInfo]) -> list[UserInfo]:
    """The infos without their hashes, for listing."""
    return [msgspec.structs.replace(i, password_hash="") for i in infos]
