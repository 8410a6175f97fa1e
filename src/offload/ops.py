"""Store conversations written once, run sync or async.

A management operation (count, then page through ids, then act on each page) is a
generator that yields ``(verb, params)`` and receives the store's answer. ``run_sync``
answers it from the blocking client (no event loop is built, as sync callers need),
``run_async`` from the async one. The logic exists once, so the CLI, the HTTP API and
the dashboard cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

from offload.backends.base import Backend, SyncBackend

T = TypeVar("T")

#: A call to the store: a verb that ``Backend`` and ``SyncBackend`` share, and its params
#: (None for the verbs that take none).
Call = tuple[str, object]
Op = Generator[Call, Any, T]


def run_sync(backend: SyncBackend, op: Op[T]) -> T:
    try:
        verb, params = next(op)
        while True:
            fn = getattr(backend, verb)
            answer = fn() if params is None else fn(params)
            verb, params = op.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_async(backend: Backend, op: Op[T]) -> T:
    try:
        verb, params = next(op)
        while True:
            fn = getattr(backend, verb)
            answer = await (fn() if params is None else fn(params))
            verb, params = op.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
