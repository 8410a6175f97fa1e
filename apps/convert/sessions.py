"""No accounts: a browser's session owns its uploads. The cookie carries a random id
signed with a key kept in the store (so every process of the service reads it alike);
forms carry a token derived from that id (CSRF), and every page sends a strict CSP."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "convert_session"
_MAX_AGE_S = 30 * 24 * 3600
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


class Sessions:
    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._cookies = URLSafeTimedSerializer(secret, salt="convert.session")

    def session_id(self, request: Request) -> str | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            value = self._cookies.loads(raw, max_age=_MAX_AGE_S)  # old cookies end
        except BadSignature:
            return None
        return value if isinstance(value, str) and value.isalnum() else None

    def current_or_new(self, request: Request) -> tuple[str, bool]:
        """(this browser's session id, whether it is new and needs its cookie set)."""
        session = self.session_id(request)
        return (session, False) if session is not None else (secrets.token_hex(16), True)

    def set_cookie(self, request: Request, response: Response, session: str) -> None:
        response.set_cookie(
            COOKIE, self._cookies.dumps(session), max_age=_MAX_AGE_S, httponly=True,
            samesite="lax", secure=request.url.scheme == "https", path="/",
        )  # fmt: skip

    def csrf_token(self, session: str) -> str:
        return hmac.new(
            self._secret.encode(), f"csrf:{session}".encode(), hashlib.sha256
        ).hexdigest()

    def owner(self, session: str) -> str:
        """The offload owner a session's jobs are stored under: derived, so a link or a job
        that names it never gives away the session cookie's id."""
        digest = hmac.new(self._secret.encode(), f"owner:{session}".encode(), hashlib.sha256)
        return f"visitor:{digest.hexdigest()[:32]}"

    def csrf_ok(self, session: str | None, token: str) -> bool:
        return session is not None and hmac.compare_digest(self.csrf_token(session), token)


def secure_headers(response: Response) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
