"""Where features hook into a job's run: registered on the app, called by the worker.

A feature that must see a job before it runs (a batch callback gets its members'
outcomes) or its outcome before it is stored (a retry kept inside a window, a chain's
next step) registers a hook here when the app is made; the worker knows none of them
by name. Each hook must leave a job that does not use its feature untouched and cost it
no more than a dict lookup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from offload.backends.base import Outcome
from offload.records import JobRecord

if TYPE_CHECKING:
    from offload.app import Offload

#: ``(app, job) -> job``: may rewrite what the job runs with (its payload), nothing else. It
#: acts on jobs whose ``meta`` says so: a job without meta skips the before-run hooks.
BeforeRun = Callable[["Offload", JobRecord], Awaitable[JobRecord]]
#: ``(app, job, outcome) -> outcome``: may change the outcome or add follow-ups to it.
AfterRun = Callable[["Offload", JobRecord, Outcome], Awaitable[Outcome]]


class Hooks:
    def __init__(self) -> None:
        self.before_run: list[BeforeRun] = []
        self.after_run: list[AfterRun] = []

    async def prepare(self, app: Offload, job: JobRecord) -> JobRecord:
        for hook in self.before_run:
            job = await hook(app, job)
        return job

    async def settle(self, app: Offload, job: JobRecord, outcome: Outcome) -> Outcome:
        for hook in self.after_run:
            outcome = await hook(app, job, outcome)
        return outcome


__all__ = ["AfterRun", "BeforeRun", "Hooks"]
