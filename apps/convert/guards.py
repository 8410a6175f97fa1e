"""What keeps one client from spoiling the service for everyone: a body that stops at the
upload limit whatever its headers say (a chunked body has no Content-Length), a quota of
uploads and bytes per client address, a floor of free disk, and a cap on live streams.
Counts are kept per web process, in memory: a restart forgets them, which errs on the side
of the person."""

from __future__ import annotations

import shutil
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any


class BodyTooLarge(Exception):
    pass


def limited_receive(receive: Any, limit_bytes: int) -> Any:
    """``receive`` that raises ``BodyTooLarge`` once the body passes ``limit_bytes``."""
    seen = 0

    async def bounded() -> Any:
        nonlocal seen
        message = await receive()
        if message.get("type") == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit_bytes:
                raise BodyTooLarge
        return message

    return bounded


class Quota:
    """At most ``uploads`` uploads and ``total_bytes`` bytes an hour from one address."""

    def __init__(self, uploads: int, total_bytes: int, window_s: float = 3600.0) -> None:
        self.uploads, self.total_bytes, self.window_s = uploads, total_bytes, window_s
        self._seen: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._lock = threading.Lock()

    def refusal(self, client: str, size_bytes: int) -> str | None:
        """Why this upload must wait (and nothing is counted), or None (and it is)."""
        now = time.monotonic()
        with self._lock:
            seen = self._seen[client]
            while seen and seen[0][0] < now - self.window_s:
                seen.popleft()
            if len(seen) >= self.uploads:
                return f"at most {self.uploads} uploads an hour from one address: try later"
            if sum(size for _, size in seen) + size_bytes > self.total_bytes:
                return (f"at most {self.total_bytes // 2**20} MB an hour from one address: "
                        "try later")  # fmt: skip
            seen.append((now, size_bytes))
            if len(self._seen) > 100_000:  # forget the oldest addresses, not the limits
                for stale in [c for c, s in self._seen.items() if not s][:50_000]:
                    del self._seen[stale]
            return None


def disk_refusal(folder: Path, needed_bytes: int, floor_bytes: int) -> str | None:
    free = shutil.disk_usage(folder).free
    if free - needed_bytes < floor_bytes:
        return "the service is short of disk space right now: try again later"
    return None


class Streams:
    """Live streams open at once: per session and in all."""

    def __init__(self, per_session: int = 4, total: int = 500) -> None:
        self.per_session, self.total = per_session, total
        self._open: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def enter(self, session: str) -> bool:
        with self._lock:
            if self._open[session] >= self.per_session or sum(self._open.values()) >= self.total:
                return False
            self._open[session] += 1
            return True

    def leave(self, session: str) -> None:
        with self._lock:
            self._open[session] -= 1
            if self._open[session] <= 0:
                del self._open[session]
