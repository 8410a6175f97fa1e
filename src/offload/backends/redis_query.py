"""Listing jobs: newest first, page by page, in short scripts that never stall Redis; a
batch's jobs from the batch's own index."""

from __future__ import annotations

from offload.backends.base import Page, QueryParams
from offload.backends.redis_codec import opt, records, text
from offload.backends.redis_keys import Keyspace
from offload.backends.redis_plans import QUERY_SCAN, Plan, Raw, Script
from offload.records import JobRecord
from offload.states import JobState


def plan_query(ks: Keyspace, params: QueryParams) -> Plan[Page]:
    f = params.filter
    want = params.limit + 1
    for name in ("queue", "task", "owner", "batch"):
        value = getattr(f, name)
        if value is not None:
            text(value, "", f"the filter's {name}")
    if f.batch is not None:  # the batch's own index: never a scan of every job
        return (yield from _query_batch(f.batch, params))
    if f.queue is not None:
        queues = [f.queue]
    else:
        queues = sorted(q.decode() for q in (yield Raw(("SMEMBERS", ks.queues))))
    states = ",".join(JobState(s).value for s in f.states)
    found: list[JobRecord] = []
    for queue in queues:
        cursor, matches = params.cursor or "", 0
        while True:
            reply = yield Script(
                "query",
                [queue, cursor, want - matches, QUERY_SCAN, states,
                 opt(f.task), opt(f.owner), opt(f.batch)],
            )  # fmt: skip
            page = records(reply[1:])
            found += page
            matches += len(page)
            cursor = reply[0].decode()
            if matches >= want or not cursor:
                break
    found.sort(key=lambda j: j.id, reverse=True)
    jobs = found[: params.limit]
    more = len(found) > params.limit
    return Page(jobs=jobs, next_cursor=jobs[-1].id if more and jobs else None)


def _query_batch(batch: str, params: QueryParams) -> Plan[Page]:
    f = params.filter
    want = params.limit + 1
    states = ",".join(JobState(s).value for s in f.states)
    found: list[JobRecord] = []
    cursor = params.cursor or ""
    while True:
        reply = yield Script(
            "query_batch",
            [batch, cursor, want - len(found), QUERY_SCAN, states,
             opt(f.task), opt(f.owner), opt(f.queue)],
        )  # fmt: skip
        found += records(reply[1:])
        cursor = reply[0].decode()
        if len(found) >= want or not cursor:
            break
    jobs = found[: params.limit]
    more = len(found) > params.limit
    return Page(jobs=jobs, next_cursor=jobs[-1].id if more and jobs else None)
