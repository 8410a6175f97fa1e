"""The in-memory store's event log and worker registry: small, bounded, and kept in time."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from offload.backends.event_wire import EVENT_RETENTION_S
from offload.records import JobEvent, WorkerInfo

#: Steps kept at most, however young: a burst cannot grow the log without bound.
MAX_STEPS = 100_000


class EventLog:
    """Each step's events under an increasing sequence number (call under the store's lock)."""

    def __init__(self) -> None:
        self._steps: deque[tuple[int, float, list[JobEvent]]] = deque(maxlen=MAX_STEPS)
        self._seq = 0

    def append(self, events: Sequence[JobEvent], now: float) -> None:
        if events:
            self._seq += 1
            self._steps.append((self._seq, now, list(events)))

    def last_seq(self) -> int:
        return self._seq

    def read(self, after_seq: int, limit: int) -> list[tuple[int, list[JobEvent]]]:
        out = []
        for seq, _, events in self._steps:
            if seq > after_seq:
                out.append((seq, events))
                if len(out) == limit:
                    break
        return out

    def prune(self, now: float) -> None:
        while self._steps and self._steps[0][1] < now - EVENT_RETENTION_S:
            self._steps.popleft()


class WorkerRegistry:
    """Live workers, each forgotten ``ttl_s`` after its last beat."""

    def __init__(self) -> None:
        self._workers: dict[str, tuple[WorkerInfo, float]] = {}  # id -> (info, expires_at)

    def beat(self, info: WorkerInfo, ttl_s: float, now: float) -> None:
        seen = WorkerInfo(
            id=info.id,
            host=info.host,
            pid=info.pid,
            queues=list(info.queues),
            concurrency=info.concurrency,
            started_at=info.started_at,
            last_seen=now,
            running=list(info.running),
        )
        self._workers[info.id] = (seen, now + ttl_s)

    def remove(self, ids: Sequence[str]) -> None:
        for worker_id in ids:
            self._workers.pop(worker_id, None)

    def live(self, now: float) -> list[WorkerInfo]:
        return [info for _, (info, end) in sorted(self._workers.items()) if end > now]

    def prune(self, now: float) -> None:
        for worker_id in [w for w, (_, end) in self._workers.items() if end <= now]:
            del self._workers[worker_id]
