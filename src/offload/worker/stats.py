"""What a worker did, counted: returned by ``Worker.run`` and shown when it stops."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class WorkerStats:
    started: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0
    deferred: int = 0
    lost: int = 0
    rejected: int = 0
