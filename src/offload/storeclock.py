"""The store's clock, read through an offset from this process's clock.

Every time decision (a rate limit's bucket, a window's next opening) uses the
store's time, so workers and callers whose clocks disagree still agree with each
other: a worker 60 s fast must not make a job on a correct worker wait 60 s. The
offset is sampled from the store and again every ``refresh_s``, so a hot path
costs no round trip.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from offload.backends.base import Backend, SyncBackend

#: How long a sampled offset is trusted; clocks drift by milliseconds an hour.
REFRESH_S = 10.0
#: A sample whose round trip took longer than this says too little about the offset.
MAX_SAMPLE_S = 1.0


class StoreClock:
    def __init__(self, local: Callable[[], float], refresh_s: float = REFRESH_S) -> None:
        self._local = local
        self._refresh_s = refresh_s
        self._offset_s: float | None = None
        self._sampled_at = 0.0  # time.monotonic() of the last sample

    @property
    def fresh(self) -> bool:
        return self._offset_s is not None and time.monotonic() - self._sampled_at < self._refresh_s

    def _sample(self, before: float, store_s: float, after: float) -> float:
        if after - before > MAX_SAMPLE_S:  # a slow answer (or a clock that jumped): not kept
            return store_s
        self._offset_s = store_s - (before + after) / 2  # the store answered mid-way
        self._sampled_at = time.monotonic()
        return after + self._offset_s

    async def now(self, backend: Backend) -> float:
        """The store's time now (a round trip only when the offset is stale)."""
        if self.fresh:
            return self.from_local(self._local())
        before = self._local()
        store_s = await backend.now()
        return self._sample(before, store_s, self._local())

    def now_blocking(self, backend: SyncBackend) -> float:
        if self.fresh:
            return self.from_local(self._local())
        before = self._local()
        store_s = backend.now()
        return self._sample(before, store_s, self._local())

    def from_local(self, local_s: float) -> float:
        """A time on this process's clock, on the store's (as last sampled)."""
        return local_s + (self._offset_s or 0.0)

    def to_local(self, store_s: float) -> float:
        """A time on the store's clock, on this process's (as last sampled)."""
        return store_s - (self._offset_s or 0.0)
