"""Time-ordered job ids (UUIDv7), so ids sort by creation and pages are stable."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid


class IdGenerator:
    """UUIDv7 with a counter in the sub-millisecond bits: monotonic within a process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0

    def __call__(self) -> str:
        with self._lock:
            now_ms = time.time_ns() // 1_000_000
            if now_ms <= self._last_ms:
                self._counter += 1
                if self._counter > 0xFFF:  # 4,096 ids in one millisecond: borrow the next one
                    self._last_ms += 1
                    self._counter = 0
                now_ms = self._last_ms
            else:
                self._last_ms = now_ms
                self._counter = 0
            counter = self._counter
        rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
        value = (now_ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
        return _format(value)


def _format(value: int) -> str:
    """``str(uuid.UUID(int=value))`` at a third of the cost: ids are made on every enqueue."""
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def derived_id(time_ms: int, seed: str) -> str:
    """A UUIDv7 at ``time_ms`` whose other bits hash ``seed``: every process that derives
    the id of the same thing (a cron run, a chain's next step) gets the same one."""
    digest = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:10], "big")
    counter = digest & 0xFFF
    rand = (digest >> 12) & ((1 << 62) - 1)
    value = (time_ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    return _format(value)


def id_time_ms(job_id: str) -> int:
    """The millisecond timestamp of a UUIDv7 job id."""
    return uuid.UUID(job_id).int >> 80
