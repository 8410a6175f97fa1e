"""Signed links that work without a token until they expire: a job's page or one of its
files, for an e-mail or a chat message. ``itsdangerous`` signs them with the store's
link key (``app.admin.aio.link_secret()``), so every server signs and checks alike.

A link carries what it opens (a job, maybe a file), the job's owner and its end of
life; a changed character fails the signature, and an old link says it has expired.
"""

from __future__ import annotations

import time
from typing import Any

#: How long a link works unless asked otherwise: a week.
LINK_TTL_S = 7 * 24 * 3600
MAX_LINK_TTL_S = 366 * 24 * 3600
_SALT = "offload.link"


class LinkInvalid(LookupError):
    """Not a link this store signed (or one changed since): answered as not found."""


class LinkExpired(Exception):
    pass


def _serializer(secret: str) -> Any:
    from itsdangerous import URLSafeSerializer

    return URLSafeSerializer(secret, salt=_SALT)


def sign(secret: str, job_id: str, owner: str | None, file: str | None = None,
         ttl_s: float = LINK_TTL_S, expires_at: int | None = None) -> tuple[str, int]:  # fmt: skip
    """(the link's token, when it expires in seconds since the epoch)."""
    if expires_at is None:
        expires_at = int(time.time() + ttl_s)
    return _serializer(secret).dumps([job_id, file, owner, expires_at]), expires_at


def open_link(secret: str, token: str) -> tuple[str, str | None, str | None, int]:
    """(job id, file name or None, owner, end of life) of a valid link; ``LinkInvalid``,
    ``LinkExpired``."""
    from itsdangerous import BadSignature

    try:
        job_id, file, owner, expires_at = _serializer(secret).loads(token)
    except (BadSignature, ValueError, TypeError):
        raise LinkInvalid("this link is not valid: it may have been cut short") from None
    if not isinstance(expires_at, int) or time.time() > expires_at:
        raise LinkExpired("this link has expired: ask for a new one")
    return str(job_id), None if file is None else str(file), owner, expires_at
