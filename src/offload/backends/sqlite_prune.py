"""Pruning SQLite: every table's old rows, in short transactions of their own."""

from __future__ import annotations

from offload.backends.base import PruneParams
from offload.backends.sqlite_connect import Connections
from offload.backends.sqlite_counts import prune_counts
from offload.backends.sqlite_endings import prune_batches
from offload.backends.sqlite_events import prune_events
from offload.backends.sqlite_schema import Q, _in

#: Rows deleted per transaction.
PRUNE_STEP = 1000


def prune_all(db: Connections, params: PruneParams, now: float) -> int:
    """Delete in steps of ``PRUNE_STEP`` rows, each its own short transaction: one
    long DELETE would hold the write lock until concurrent enqueues time out. Batches
    completed before ``finished_before`` go with the jobs."""
    states = [s.value for s in params.states]
    with db.write() as conn:
        conn.execute(Q["prune_turns"], (params.finished_before,))
        conn.execute(Q["prune_marks"], (now,))
        conn.execute(Q["prune_workers"], (now,))
    prune_events(db, now, PRUNE_STEP)
    prune_batches(db, params.finished_before, PRUNE_STEP)
    prune_counts(db, now, params.counts_before, PRUNE_STEP)
    deleted = 0
    while states:
        with db.write() as conn:
            step = conn.execute(
                _in(Q["prune"], states), [*states, params.finished_before, PRUNE_STEP]
            ).rowcount
        deleted += step
        if step < PRUNE_STEP:
            break
    return deleted
