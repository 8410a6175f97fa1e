"""Store URLs as people may see them: every password masked."""

from __future__ import annotations

import re

# user:password@ in the authority, and any ...password=... option (libpq's password=,
# a Redis socket's unix://@/path/redis.sock?password=...)
_AUTHORITY_PASSWORD = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/?#@:]*):([^/?#@]*)@")
_QUERY_PASSWORD = re.compile(r"([?&][^=&#]*password=)([^&#]*)", re.IGNORECASE)


def display_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs and messages."""
    masked = _AUTHORITY_PASSWORD.sub(r"\1:***@", url, count=1)
    if "password=" in masked.lower():
        masked = _QUERY_PASSWORD.sub(r"\1***", masked)
    return masked
