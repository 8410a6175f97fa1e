"""API tokens: an owner and a role each, kept in the store as marks, hashed.

Every surface (the HTTP API, next the dashboard) asks the store, so a token created on
one machine works on all and a revoked one stops everywhere at once. A token reads
``off_<id>_<secret>``: the id finds its mark (``token:<id>``) without scanning; only
the SHA-256 of the secret is kept. The secret has 256 random bits, so a fast hash is
enough here (a slow one is for passwords that people choose). The list of ids is a
mark of its own, changed by compare-and-set like every mark.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Sequence

import msgspec

from offload.backends.base import MarkNamesParams, MarkParams
from offload.bounds import check_owner
from offload.errors import ConfigurationError, InvalidQuery
from offload.ops import Op

PREFIX = "off_"
_INDEX = "tokens"
_CAS_TRIES = 20
_ID_BYTES = 9  # 12 URL-safe characters
_SECRET_BYTES = 32


class Role(enum.StrEnum):
    """What a token may do: ``admin`` and ``operator`` see every owner's jobs and act on
    them (only ``admin`` may manage tokens); ``submitter`` starts and manages its owner's
    jobs; ``viewer`` reads its owner's jobs and acts on none."""

    ADMIN = "admin"
    OPERATOR = "operator"
    SUBMITTER = "submitter"
    VIEWER = "viewer"

    @property
    def sees_all_owners(self) -> bool:
        return self in (Role.ADMIN, Role.OPERATOR)

    @property
    def can_act(self) -> bool:
        return self is not Role.VIEWER


class TokenInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A token as stored (never its secret)."""

    id: str
    owner: str
    role: Role
    name: str = ""
    created_at: float
    revoked_at: float | None = None
    secret_sha256: str = ""

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class NewToken(msgspec.Struct, frozen=True, kw_only=True):
    """A created token: ``token`` is shown once and never stored."""

    token: str
    info: TokenInfo


def _mark(token_id: str) -> str:
    return "token:" + token_id


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_role(role: str | Role) -> Role:
    try:
        return Role(role)
    except ValueError:
        names = ", ".join(r.value for r in Role)
        raise ConfigurationError(f"unknown role {role!r}: use one of {names}") from None


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None (never an error: it is input)."""
    if not isinstance(token, str) or not token.startswith(PREFIX) or len(token) > 200:
        return None
    token_id, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or not token_id or not secret:
        return None
    if not all(c.isascii() and (c.isalnum() or c == "-") for c in token_id):
        return None
    return token_id, secret


def create_token(owner: str, role: str | Role, name: str = "") -> Op[NewToken]:
    owner, role = check_owner(owner), check_role(role)
    if not isinstance(name, str) or len(name) > 200 or not name.isprintable():
        raise ConfigurationError("a token's name must be short printable text")
    while True:  # an id without "_" keeps the token's two parts apart
        token_id = secrets.token_urlsafe(_ID_BYTES)
        if "_" not in token_id:
            break
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    now_s: float = yield ("now", None)
    info = TokenInfo(id=token_id, owner=owner, role=role, name=name, created_at=now_s,
                     secret_sha256=_digest(secret))  # fmt: skip
    params = MarkParams(name=_mark(token_id), value=msgspec.json.encode(info).decode())
    if not (yield ("set_mark", params)):
        raise InvalidQuery("a token with this id exists already; try again")
    yield from _edit_index(add=token_id)
    return NewToken(token=f"{PREFIX}{token_id}_{secret}", info=info)


def _edit_index(*, add: str) -> Op[None]:
    for _ in range(_CAS_TRIES):
        marks: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[_INDEX]))
        current = marks.get(_INDEX)
        ids = _ids(current)
        if add in ids:
            return
        value = msgspec.json.encode([*ids, add]).decode()
        if (yield ("set_mark", MarkParams(name=_INDEX, value=value, expected=current))):
            return
    raise InvalidQuery("the token list kept changing under this call; try again")


def _ids(raw: str | None) -> list[str]:
    if raw is None:
        return []
    try:
        return [i for i in msgspec.json.decode(raw, type=list[str]) if isinstance(i, str)]
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []  # written by hand: the tokens themselves still work


def _decode(raw: str | None) -> TokenInfo | None:
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw, type=TokenInfo)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # a damaged mark authenticates nobody


def list_tokens() -> Op[list[TokenInfo]]:
    marks: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[_INDEX]))
    ids = _ids(marks.get(_INDEX))
    if not ids:
        return []
    found: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[_mark(i) for i in ids]))
    infos = [_decode(found.get(_mark(i))) for i in ids]
    return [i for i in infos if i is not None]


def revoke_token(token_id: str) -> Op[TokenInfo]:
    """Revoke a token by id (``LookupError`` if there is none); revoking twice is no error."""
    name = _mark(token_id)
    for _ in range(_CAS_TRIES):
        marks: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[name]))
        current = marks.get(name)
        info = _decode(current)
        if info is None:
            raise LookupError(f"no token with id {token_id!r}")
        if not info.active:
            return info
        now_s: float = yield ("now", None)
        revoked = msgspec.structs.replace(info, revoked_at=now_s)
        value = msgspec.json.encode(revoked).decode()
        if (yield ("set_mark", MarkParams(name=name, value=value, expected=current))):
            return revoked
    raise InvalidQuery("the token kept changing under this call; try again")


def authenticate(token: str) -> Op[TokenInfo | None]:
    """The active token's info, or None (malformed, unknown, revoked or wrong secret)."""
    parts = split_token(token)
    if parts is None:
        return None
    token_id, secret = parts
    marks: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[_mark(token_id)]))
    info = _decode(marks.get(_mark(token_id)))
    if info is None or not info.active:
        return None
    if not hmac.compare_digest(info.secret_sha256, _digest(secret)):
        return None
    return info


def public(infos: Sequence[TokenInfo]) -> list[TokenInfo]:
    """The infos without their digests, for listing."""
    return [msgspec.structs.replace(i, secret_sha256="") for i in infos]


_LINK_SECRET = "secret:links"


def link_secret() -> Op[str]:
    """The key signed links are signed with, made on first use and kept in the store, so
    every server signs and checks alike (``$OFFLOAD_SECRET_KEY`` overrides it)."""
    for _ in range(_CAS_TRIES):
        marks: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[_LINK_SECRET]))
        found = marks.get(_LINK_SECRET)
        if found:
            return found
        made = secrets.token_urlsafe(32)
        if (yield ("set_mark", MarkParams(name=_LINK_SECRET, value=made, expected=found))):
            return made
    raise InvalidQuery("the link secret kept changing under this call; try again")
