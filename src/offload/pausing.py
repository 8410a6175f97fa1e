"""Paused queues: kept in the store as marks, so every worker, on every machine, agrees.

A pause is a mark (``queue-paused:NAME``) plus a QUEUE_PAUSED event: workers drop the
queue from their claims when the event reaches them (within about a second), and
re-read the marks whenever they (re)subscribe, so a worker that missed the event, or
started later, still honours the pause. The management API sets them.
"""

from __future__ import annotations

from collections.abc import Iterable

from offload.backends.base import MarkNamesParams, MarkParams, PublishParams
from offload.errors import InvalidQuery
from offload.ops import Op
from offload.records import EventKind, JobEvent

PAUSED = "paused"
RESUMED = "resumed"
#: A resumed queue's mark is kept this long, then expires: nothing lingers forever.
RESUMED_TTL_S = 24 * 3600.0
_CAS_TRIES = 5


def paused_mark(queue: str) -> str:
    return "queue-paused:" + queue


def paused_queues(queues: Iterable[str]) -> Op[set[str]]:
    names = {paused_mark(q): q for q in queues}
    if not names:
        return set()
    marks: dict[str, str] = yield ("get_marks", MarkNamesParams(names=list(names)))
    return {names[name] for name, value in marks.items() if value == PAUSED}


def set_paused(queue: str, paused: bool) -> Op[bool]:
    """Pause or resume ``queue`` (False if it already was) and tell every worker at once."""
    name = paused_mark(queue)
    wanted = PAUSED if paused else RESUMED
    for _ in range(_CAS_TRIES):  # compare-and-set: another person may act at the same time
        marks: dict[str, str] = yield ("get_marks", MarkNamesParams(names=[name]))
        current = marks.get(name)
        if (current == PAUSED) == paused:
            return False
        ttl_s = None if paused else RESUMED_TTL_S
        params = MarkParams(name=name, value=wanted, expected=current, ttl_s=ttl_s)
        if (yield ("set_mark", params)):
            kind = EventKind.QUEUE_PAUSED if paused else EventKind.QUEUE_RESUMED
            now_s: float = yield ("now", None)
            event = JobEvent(kind=kind, queue=queue, at=now_s)
            yield ("publish", PublishParams(events=[event]))
            return True
    raise InvalidQuery(f"queue {queue!r} kept changing under this call; try again")
