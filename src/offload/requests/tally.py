"""One app's timed requests, tallied per minute in memory and written to the store whole.

A request only adds to a row under a lock: no store round trip on the request path. The
process is the source of its rows (each write replaces its earlier one), so a write lost
to an outage is simply made again by the next, and a repeated one counts nothing twice;
the slowest request of a minute is raised in its mark only when it beats the mark's.
"""

from __future__ import annotations

import bisect
import logging
import threading
from dataclasses import dataclass, field

import msgspec

from offload.admin.requests import REQUESTS_QUEUE, SlowRequest, decode_slowest, slowest_mark
from offload.backends.base import CountsParams, MarkNamesParams, MarkParams
from offload.ops import Op
from offload.records import DURATION_BUCKETS_MS, MinuteCounts

log = logging.getLogger("offload.requests")

#: Minutes kept in memory after they end (a request that ends late lands in its minute).
KEEP_MINUTES = 3
#: Unwritten minutes kept while the store is down (a day); older ones are given up.
MAX_UNWRITTEN_MINUTES = 24 * 60
#: Tries of the slowest mark's compare-and-set against other processes raising it too.
_CAS_TRIES = 5
_MAX_PATH_CHARS = 200


@dataclass(slots=True)
class _Minute:
    requests: int = 0
    over: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS_MS) + 1))
    #: The slowest request: (duration_s, method, path, at_s), kept raw until written.
    slowest: tuple[float, str, str, float] | None = None
    dirty: bool = True
    slowest_dirty: bool = False


@dataclass(slots=True)
class Taken:
    """What one write sends: the rows, the slowest to raise, and the minutes they came from."""

    rows: list[MinuteCounts]
    slowest: list[tuple[int, SlowRequest]]
    minutes: list[_Minute]
    raised: list[_Minute]


def _shown(text: str) -> str:
    """A path as a report can print it: printable, short."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return text[:_MAX_PATH_CHARS] or "/"


class RequestTally:
    """The per-minute rows of one app name in this process (``source``)."""

    def __init__(self, name: str, source: str, threshold_s: float) -> None:
        self.name = name
        self.source = source
        self.threshold_s = threshold_s
        self._lock = threading.Lock()
        self._minutes: dict[int, _Minute] = {}

    def add(self, duration_s: float, method: str, path: str, at_s: float) -> None:
        """Count one request that ended at ``at_s`` (the store's clock)."""
        index = bisect.bisect_left(DURATION_BUCKETS_MS, max(duration_s, 0.0) * 1000.0)
        minute = int(at_s // 60)
        with self._lock:
            row = self._minutes.get(minute)
            if row is None:
                row = self._minutes[minute] = _Minute()
            row.requests += 1
            if duration_s > self.threshold_s:
                row.over += 1
            row.histogram[index] += 1
            row.dirty = True
            if row.slowest is None or duration_s > row.slowest[0]:
                row.slowest = (duration_s, method, path, at_s)
                row.slowest_dirty = True

    def take(self) -> Taken | None:
        """The rows changed since the last write, now marked written (``give_back`` if not)."""
        with self._lock:
            changed = sorted((m, r) for m, r in self._minutes.items() if r.dirty)
            if not changed:
                return None
            taken = Taken([], [], [], [])
            for minute, row in changed:
                row.dirty = False
                taken.minutes.append(row)
                taken.rows.append(MinuteCounts(
                    minute=minute, queue=REQUESTS_QUEUE, task=self.name, source=self.source,
                    started=row.requests, dead=row.over, run_ms=list(row.histogram),
                ))  # fmt: skip
                if row.slowest_dirty and row.slowest is not None:
                    row.slowest_dirty = False
                    duration_s, method, path, at_s = row.slowest
                    taken.raised.append(row)
                    taken.slowest.append((minute, SlowRequest(
                        duration_ms=round(duration_s * 1000.0, 3), method=_shown(method),
                        path=_shown(path), at_s=at_s, threshold_s=self.threshold_s,
                    )))  # fmt: skip
            return taken

    def give_back(self, taken: Taken) -> None:
        """A write failed: its rows are written again next time."""
        with self._lock:
            for row in taken.minutes:
                row.dirty = True
            for row in taken.raised:
                row.slowest_dirty = True

    def forget_before(self, minute: int) -> None:
        """Drop the written minutes before ``minute``, and unwritten ones past keeping."""
        with self._lock:
            newest = max(self._minutes, default=minute)
            for key in [k for k, r in self._minutes.items() if k < minute and not r.dirty]:
                del self._minutes[key]
            stale = [k for k in self._minutes if k < newest - MAX_UNWRITTEN_MINUTES]
            for key in stale:
                del self._minutes[key]
            if stale:
                log.warning("gave up %d minutes of request counts the store never took", len(stale))

    @property
    def pending(self) -> bool:
        with self._lock:
            return any(r.dirty for r in self._minutes.values())


def write(taken: Taken, name: str, ttl_s: float) -> Op[None]:
    """Store the rows, then raise each minute's slowest mark where ours is slower."""
    yield ("record_counts", CountsParams(rows=taken.rows, ttl_s=ttl_s))
    for minute, slow in taken.slowest:
        yield from _raise_slowest(slowest_mark(name, minute), slow, ttl_s)


def _raise_slowest(mark: str, slow: SlowRequest, ttl_s: float) -> Op[None]:
    value = msgspec.json.encode(slow).decode()
    for _ in range(_CAS_TRIES):
        marks: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[mark]))
        current = marks.get(mark)
        stored = decode_slowest(current)
        if stored is not None and stored.duration_ms >= slow.duration_ms:
            return None
        params = MarkParams(name=mark, value=value, expected=current, ttl_s=ttl_s)
        if (yield ("set_mark", params)):
            return None
    return None
