"""Who is looking at the dashboard, and proof that a form came from its own pages.

A login sets a signed, timed cookie naming the user and their session version; every
request reads the user again, so a disabled user or a changed password ends every
session at once, on every server. The CSRF defence is a signed double-submit: a random
nonce in an ``HttpOnly`` cookie, and its HMAC in every form and htmx request; a
request whose token does not match its own cookie is refused, and so is one whose
``Origin`` names another site.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import HTTPException, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from offload.tokens import Role

if TYPE_CHECKING:
    from offload.web.deps import WebSettings

SESSION_COOKIE = "offload_session"
CSRF_COOKIE = "offload_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
#: A session lasts this long after login, however active.
SESSION_MAX_AGE_S = 12 * 3600


@dataclass(frozen=True)
class Viewer:
    """The person a page is for: ``owner`` None with a staff role sees every owner's jobs."""

    name: str
    owner: str | None
    role: Role

    @property
    def scope(self) -> str | None:
        return None if self.role.sees_all_owners else self.owner

    @property
    def can_act(self) -> bool:
        return self.role.can_act

    @property
    def is_staff(self) -> bool:
        return self.role.sees_all_owners


NO_AUTH = Viewer(name="", owner=None, role=Role.ADMIN)


class LoginNeeded(Exception):
    """The page needs a signed-in user: the answer is the login page."""


class Keys:
    """The dashboard's signing key, derived from the store's link secret (or
    ``$OFFLOAD_SECRET_KEY``) on first use, so every server process agrees."""

    def __init__(self, web: WebSettings) -> None:
        self._web = web
        self._key: bytes | None = None

    async def key(self) -> bytes:
        if self._key is None:
            secret = await self._web.app.admin.aio.link_secret()
            self._key = hmac.new(secret.encode(), b"offload.dashboard", hashlib.sha256).digest()
        return self._key

    async def serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(await self.key(), salt="offload.dashboard.session")

    async def sign_notice(self, message: str) -> str:
        return URLSafeTimedSerializer(await self.key(), salt="offload.dashboard.notice").dumps(
            message)  # fmt: skip

    async def read_notice(self, signed: str) -> str:
        """The notice an action of this dashboard made (a minute old at most), else ""."""
        serializer = URLSafeTimedSerializer(await self.key(), salt="offload.dashboard.notice")
        try:
            message = serializer.loads(signed, max_age=60)
        except (BadSignature, ValueError, TypeError):
            return ""
        return message if isinstance(message, str) else ""

    async def csrf_token(self, nonce: str, session: str) -> str:
        """The token of this nonce and this session together: a pair planted by someone
        else's visit is worthless with the victim's session."""
        mixed = f"{nonce}\0{session}".encode()
        return hmac.new(await self.key(), mixed, hashlib.sha256).hexdigest()


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age_s: int
               ) -> None:  # fmt: skip
    response.set_cookie(name, value, max_age=max_age_s, httponly=True, samesite="strict",
                        secure=secure(request), path="/")  # fmt: skip


def csrf_nonce(request: Request) -> tuple[str, bool]:
    """The request's CSRF nonce and whether it is new (to be set as a cookie)."""
    found = request.cookies.get(CSRF_COOKIE, "")
    if 20 <= len(found) <= 100 and found.isascii():
        return found, False
    return secrets.token_urlsafe(24), True


async def check_csrf(request: Request, keys: Keys, given: str | None) -> None:
    """Refuse a state-changing request not made by the dashboard's own pages."""
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        host = request.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            raise HTTPException(403, "this request came from another site; use the dashboard")
    nonce = request.cookies.get(CSRF_COOKIE)
    given = given or request.headers.get(CSRF_HEADER)
    session = request.cookies.get(SESSION_COOKIE, "")
    if (
        not nonce
        or not given
        or not given.isascii()
        or not hmac.compare_digest(given, await keys.csrf_token(nonce, session))
    ):
        raise HTTPException(
            403, "the form's security token is missing or stale: reload the page and try again"
        )


async def viewer_of(request: Request, web: WebSettings, keys: Keys) -> Viewer | None:
    """The signed-in user (``NO_AUTH`` when the server runs without auth), else None."""
    if not web.auth:
        return NO_AUTH
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw or len(raw) > 500:
        return None
    try:
        name, version = (await keys.serializer()).loads(raw, max_age=SESSION_MAX_AGE_S)
    except (BadSignature, ValueError, TypeError):
        return None
    if not isinstance(name, str) or not isinstance(version, int):
        return None
    user = await web.app.admin.aio.user(name)
    if user is None or user.disabled_at is not None or user.session_version != version:
        return None
    return Viewer(name=user.name, owner=user.owner, role=user.role)


async def session_value(keys: Keys, name: str, version: int) -> str:
    return (await keys.serializer()).dumps([name, version])


def local_path(target: str | None) -> str:
    """Where to go after login: a path on this site only (never ``//evil`` or a URL)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if not target.isprintable() or len(target) > 2000:
        return "/"
    return target
