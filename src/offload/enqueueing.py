"""Storing new jobs for a task's ``enqueue`` calls, sync and async, on the app's store or
in the caller's own database transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from offload.backends.base import EnqueueParams, TransactionalBackend, TransactionalSync
from offload.errors import ConfigurationError
from offload.job import Job
from offload.records import JobRecord, NewJob

if TYPE_CHECKING:
    from offload.app import Offload
    from offload.task import Signature

R = TypeVar("R")


def enqueue_one(app: Offload, new: NewJob, connection: Any = None) -> Job[Any]:
    (record,) = _store(app, [new], connection)
    return Job(app, record)


async def enqueue_one_async(app: Offload, new: NewJob, connection: Any = None) -> Job[Any]:
    (record,) = await _store_async(app, [new], connection)
    return Job(app, record)


def enqueue_signatures(
    app: Offload, signatures: Sequence[Signature[R]], connection: Any = None
) -> list[Job[R]]:
    return [Job(app, r) for r in _store(app, _owned_by(app, signatures), connection)]


async def enqueue_signatures_async(
    app: Offload, signatures: Sequence[Signature[R]], connection: Any = None
) -> list[Job[R]]:
    if any(s.call.window or s.task.defaults.window for s in signatures):
        await app.store_now_async()  # placing them reads the store's clock: no blocking
    stored = await _store_async(app, _owned_by(app, signatures), connection)
    return [Job(app, r) for r in stored]


def _transactional(app: Offload) -> None:
    if not app.backend.capabilities.transactional_enqueue:
        raise ConfigurationError(
            f"enqueue(connection=...) joins your database transaction, which {app.url} "
            "cannot do; use a postgresql:// URL or leave connection out"
        )


def _store(app: Offload, jobs: list[NewJob], connection: Any) -> list[JobRecord]:
    params = EnqueueParams(jobs=jobs)
    if connection is None:
        return app.backend.blocking.enqueue(params)
    _transactional(app)
    return cast(TransactionalSync, app.backend.blocking).enqueue_in(connection, params)


async def _store_async(app: Offload, jobs: list[NewJob], connection: Any) -> list[JobRecord]:
    params = EnqueueParams(jobs=jobs)
    if connection is None:
        return await app.backend.enqueue(params)
    _transactional(app)
    return await cast(TransactionalBackend, app.backend).enqueue_in(connection, params)


def _owned_by(app: Offload, signatures: Sequence[Signature[Any]]) -> list[NewJob]:
    for signature in signatures:
        if signature.task.app is not app:
            raise ConfigurationError(f"{signature.task!r} belongs to another Offload app")
    return [s.to_new_job() for s in signatures]
