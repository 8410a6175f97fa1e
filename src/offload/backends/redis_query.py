"""Finding jobs: listing newest first page by page, and counting, in short scripts that
never stall Redis.

A filter is answered from the narrowest index that covers it: a batch's, an owner's or a
task's own index (across queues), a time range's ids from the queue's ``created`` index
(sorted here when the range holds at most RANGE_MAX of them), else the queue's ids newest
first. A count that only states, queues and times decide is read from index sizes without
looking at a job; one with a batch, owner or task walks that one's index, in scripts of
QUERY_SCAN jobs that never stall Redis.

Free text (``JobFilter.text``) has no index on Redis: it looks at the TEXT_SCAN newest jobs
of each queue (or of the batch, owner or task, or of a time range), no further, so that a
search on a store of millions answers at once; an older job matches no text (``count``
agrees with the pages). Case is ignored for ASCII letters only (Lua's ``string.lower``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from offload.backends.base import CountParams, JobFilter, Page, QueryParams
from offload.backends.redis_codec import opt, records, text, when
from offload.backends.redis_keys import Keyspace
from offload.backends.redis_plans import QUERY_SCAN, Plan, Raw, Script
from offload.records import JobRecord
from offload.states import JobState

#: A time range with at most this many jobs in a queue is listed from the created index.
RANGE_MAX = 10_000
#: How many of the newest jobs of a queue (or batch) a text filter looks at, at most.
TEXT_SCAN = 10_000


#: What a search found: how many jobs matched, and their records when it listed them.
Found = tuple[int, list[JobRecord]]


def plan_query(ks: Keyspace, params: QueryParams) -> Plan[Page]:
    _filter_args(params.filter)  # the values checked, even where no queue is looked at
    up = params.oldest_first
    _, found = yield from _search(ks, params.filter, params.cursor or "", params.limit + 1, up)
    found.sort(key=lambda j: j.id, reverse=not up)
    jobs = found[: params.limit]
    more = len(found) > params.limit
    return Page(jobs=jobs, next_cursor=jobs[-1].id if more and jobs else None)


def plan_count(ks: Keyspace, params: CountParams) -> Plan[int]:
    """How many jobs ``plan_query`` would list over all its pages: text and batch filters
    go the query's way, the others walk the narrowest index in any order."""
    f = params.filter
    _filter_args(f)  # the values checked, whichever way the count goes
    if _own_index(f) is not None or f.text is not None:
        return (yield from _search(ks, f, "", 0))[0]
    total = 0
    for queue in (yield from _queues(ks, f)):
        total += yield from _queue_count(ks, f, queue)
    return total


def _filter_args(f: JobFilter) -> list[Any]:
    for name in ("queue", "task", "owner", "batch", "text"):
        value = getattr(f, name)
        if value is not None:
            text(value, "", f"the filter's {name}")
    states = ",".join(sorted({JobState(s).value for s in f.states}))
    return [
        states, opt(f.task), opt(f.owner), opt(f.queue), opt(f.batch), opt(f.text),
        when(f.created_after, "", "created_after"), when(f.created_before, "", "created_before"),
        json.dumps(list(f.text_skips)) if f.text_skips else "",
    ]  # fmt: skip


def _queues(ks: Keyspace, f: JobFilter) -> Plan[list[str]]:
    if f.queue is not None:
        return [f.queue]
    return sorted(q.decode() for q in (yield Raw(("SMEMBERS", ks.queues))))


def _own_index(f: JobFilter) -> tuple[str, str] | None:
    """The narrowest index of its own a filter names, as (query.lua's source, its name)."""
    if f.batch is not None:
        return "b", f.batch
    if f.owner is not None:
        return "o", f.owner
    if f.task is not None:
        return "t", f.task
    return None


def _timed(f: JobFilter) -> bool:
    return f.created_after is not None or f.created_before is not None


def _time_bounds(f: JobFilter) -> tuple[str, str]:
    """[created_after, created_before) as ZCOUNT's and ZRANGEBYSCORE's bounds."""
    after, before = f.created_after, f.created_before
    low = "-inf" if after is None else when(after, "", "created_after")
    high = "+inf" if before is None else "(" + when(before, "", "created_before")
    return low, high


def _queue_count(ks: Keyspace, f: JobFilter, queue: str) -> Plan[int]:
    """One queue's count: an index's size where it answers the filter (ZCARD, ZCOUNT), else
    the jobs of the time range, or of the states' indexes, looked at."""
    checked = f.task is not None or f.owner is not None
    if _timed(f):
        created = ks.queue_key(queue, "created")
        low, high = _time_bounds(f)
        n = int((yield Raw(("ZCOUNT", created, low, high))))
        if not (f.states or checked) or not n:
            return n
        first = 0 if low == "-inf" else int((yield Raw(("ZCOUNT", created, "-inf", "(" + low))))
        return (yield from _walk(queue, "created", first, first + n - 1, f))
    total = 0
    for name in sorted({JobState(s).value for s in f.states}) or ["all"]:
        n = int((yield Raw(("ZCARD", ks.queue_key(queue, name)))))
        total += (yield from _walk(queue, name, 0, n - 1, f)) if checked and n else n
    return total


def _walk(queue: str, index: str, first: int, last: int, f: JobFilter) -> Plan[int]:
    """Count the matches ranked ``first`` to ``last`` in one of the queue's indexes."""
    args = _filter_args(f)
    count, rank = 0, str(first)
    while rank:
        reply = yield Script("query", ["r", queue, rank, 0, QUERY_SCAN, str(last), *args, index])
        count += int(reply[1])
        rank = reply[0].decode()
    return count


def _search(ks: Keyspace, f: JobFilter, cursor: str, want: int, up: bool = False) -> Plan[Found]:
    """Every queue's matches below ``cursor`` (above it if ``up``: oldest first), at least
    ``want`` of them if there are that many; ``want`` = 0 counts them all without reading
    them."""
    own = _own_index(f)
    if own is not None:  # a batch's, owner's or task's own index: never every job's
        return (yield from _scan(ks, *own, f, cursor, want, up))
    count = 0
    found: list[JobRecord] = []
    for queue in (yield from _queues(ks, f)):
        n, jobs = yield from _in_queue(ks, f, queue, cursor, want, up)
        count, found = count + n, found + jobs
    return count, found


def _in_queue(
    ks: Keyspace, f: JobFilter, queue: str, cursor: str, want: int, up: bool
) -> Plan[Found]:
    if _timed(f):
        created = ks.queue_key(queue, "created")
        low, high = _time_bounds(f)
        if int((yield Raw(("ZCOUNT", created, low, high)))) <= RANGE_MAX:
            ids = [bytes(i) for i in (yield Raw(("ZRANGEBYSCORE", created, low, high)))]
            ids.sort(reverse=True)  # bytewise, as Redis orders ids (ZRANGEBYLEX)
            if f.text is not None:
                ids = ids[:TEXT_SCAN]
            if up:
                ids.reverse()
            if cursor:
                mark = cursor.encode()
                ids = [i for i in ids if (i > mark if up else i < mark)]
            return (yield from _check_ids(queue, ids, f, want))
    return (yield from _scan(ks, "q", queue, f, cursor, want, up))


def _scan(
    ks: Keyspace, source: str, name: str, f: JobFilter, cursor: str, want: int, up: bool = False
) -> Plan[Found]:
    """Walk an index (a queue's, batch's, owner's or task's ids) newest first (oldest first
    if ``up``), QUERY_SCAN ids a script."""
    args = _filter_args(f)
    floor = ""
    if f.text is not None:  # no further down than the TEXT_SCAN newest
        own = {"b": ks.batch, "o": ks.owner, "t": ks.task}.get(source)
        index = own(name) if own is not None else ks.queue_key(name, "all")
        oldest = yield Raw(("ZRANGE", index, TEXT_SCAN - 1, TEXT_SCAN - 1, "REV"))
        floor = bytes(oldest[0]).decode() if oldest else ""
    count = 0
    found: list[JobRecord] = []
    while True:
        left = max(want - count, 1) if want else 0
        way = source + (">" if up else "")
        reply = yield Script("query", [way, name, cursor, left, QUERY_SCAN, floor, *args])
        count += int(reply[1])
        found += records(reply[2:])
        cursor = reply[0].decode()
        if (want and count >= want) or not cursor:
            return count, found


def _check_ids(queue: str, ids: Sequence[bytes], f: JobFilter, want: int) -> Plan[Found]:
    """The matches among ``ids`` of one queue, looked at in the order given."""
    args = _filter_args(f)
    count = 0
    found: list[JobRecord] = []
    for start in range(0, len(ids), QUERY_SCAN):
        left = max(want - count, 1) if want else 0
        chunk = ids[start : start + QUERY_SCAN]
        reply = yield Script("query", ["i", queue, "", left, len(chunk), "", *args, *chunk])
        count += int(reply[1])
        found += records(reply[2:])
        if want and count >= want:
            break
    return count, found
