"""Time-ordered job ids (UUIDv7), so ids sort by creation and pages are stable."""

from __future__ import annotations

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
        return str(uuid.UUID(int=value))
