"""Running totals of the per-minute counts, for counters that only ever go up (what
Prometheus expects), whatever the retention prunes and however many processes ask.

The leader folds each settled minute (``SETTLE_S`` after it ended, once every worker
has flushed it) into one mark; a reader adds the minutes after the fold, read live.
Both come from the store, so every server process answers alike; a minute moves
from the live part to the folded one unchanged, so a total never steps back (a
worker's flush later than the settling is not counted: it is never counted twice).
"""

from __future__ import annotations

import msgspec

from offload.admin.metrics import MAX_MINUTES, REQUESTS_QUEUE
from offload.backends.base import Backend, CountsQuery, MarkNamesParams, MarkParams
from offload.ops import Op, run_async
from offload.records import MinuteCounts

#: After a minute ends, how long before it is folded (workers flush every 10 s).
SETTLE_S = 180.0
MARK = "counts:totals"
_CAS_TRIES = 5


class Total(msgspec.Struct, array_like=True):
    queue: str
    task: str
    enqueued: int = 0
    started: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    wait_ms: list[int] = msgspec.field(default_factory=list)
    run_ms: list[int] = msgspec.field(default_factory=list)


class Folded(msgspec.Struct):
    through_minute: int
    totals: list[Total] = msgspec.field(default_factory=list)


def _add_histogram(into: list[int], more: list[int]) -> None:
    if len(into) < len(more):
        into.extend([0] * (len(more) - len(into)))
    for index, count in enumerate(more):
        into[index] += count


def _add(totals: dict[tuple[str, str], Total], rows: list[MinuteCounts]) -> None:
    for row in rows:
        total = totals.setdefault((row.queue, row.task), Total(queue=row.queue, task=row.task))
        total.enqueued += row.enqueued
        total.started += row.started
        total.succeeded += row.succeeded
        total.retried += row.retried
        total.dead += row.dead
        _add_histogram(total.wait_ms, row.wait_ms)
        _add_histogram(total.run_ms, row.run_ms)


def _decode(raw: str | None) -> Folded | None:
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw, type=Folded)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # written by hand: the next fold starts again from now


def _rows(first: int, last: int) -> Op[list[MinuteCounts]]:
    if last < first:
        return []
    rows: list[MinuteCounts] = yield (
        "read_counts",
        CountsQuery(since_minute=first, until_minute=last, queue=None, task=None),
    )
    return [r for r in rows if first <= r.minute <= last]


def fold() -> Op[bool]:
    """Fold the settled minutes into the mark (the leader's job); True if it moved."""
    for _ in range(_CAS_TRIES):
        marks: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[MARK]))
        current = marks.get(MARK)
        now_s: float = yield ("now", None)
        settled = int((now_s - SETTLE_S) // 60) - 1
        folded = _decode(current)
        if folded is None:  # counting starts here
            start = Folded(through_minute=settled)
            value = msgspec.json.encode(start).decode()
        else:
            last = min(settled, folded.through_minute + MAX_MINUTES)
            if last <= folded.through_minute:
                return False
            totals = {(t.queue, t.task): t for t in folded.totals}
            _add(totals, (yield from _rows(folded.through_minute + 1, last)))
            value = msgspec.json.encode(Folded(last, sorted(totals.values(),
                                        key=lambda t: (t.queue, t.task)))).decode()  # fmt: skip
        if (yield ("set_mark", MarkParams(name=MARK, value=value, expected=current))):
            return True
    return False


def totals() -> Op[list[Total]]:
    """Every job (queue, task)'s totals so far (the timed HTTP requests are no jobs)."""
    return [t for t in (yield from all_totals()) if t.queue != REQUESTS_QUEUE]


def all_totals() -> Op[list[Total]]:
    """Every (queue, task)'s totals so far: the folded minutes and the ones after."""
    marks: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[MARK]))
    folded = _decode(marks.get(MARK))
    if folded is None:
        return []  # no leader has started counting yet
    now_s: float = yield ("now", None)
    by_key = {(t.queue, t.task): t for t in folded.totals}
    last = min(int(now_s // 60), folded.through_minute + MAX_MINUTES)
    _add(by_key, (yield from _rows(folded.through_minute + 1, last)))
    return sorted(by_key.values(), key=lambda t: (t.queue, t.task))


class CountsFolder:
    """The leader service that folds settled minutes, once a minute."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self._next_s = 0.0

    async def tick(self, backend: Backend, now_s: float) -> float | None:
        if now_s >= self._next_s:
            self._next_s = now_s + self.every_s
            await run_async(backend, fold())
        return None
