"""Micro-batching: many jobs of one task, one call that takes a list.

``@app.task(batch_size=100, batch_wait_s=0.5)`` on ``def embed(texts: list[str])
-> list[Vector]`` makes ``embed.enqueue("one text")`` store one job per item;
a worker hands up to 100 ready ones to a single call. Each job keeps its own
state, result and retries: the function returns one entry per item, and an
entry that is an exception fails that item alone.
"""

from __future__ import annotations

import functools
import inspect
import operator
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from offload.errors import ConfigurationError
from offload.records import ErrorInfo

_LIST_ORIGINS = (list, Sequence, typing.Sequence, tuple)


@dataclass(frozen=True)
class BatchSettings:
    size: int
    wait_s: float

    @staticmethod
    def make(size: int | None, wait_s: float | None) -> BatchSettings | None:
        if size is None:
            if wait_s is not None:
                raise ConfigurationError("batch_wait_s needs batch_size")
            return None
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigurationError(f"batch_size must be an int >= 1, got {size!r}")
        wait = 0.1 if wait_s is None else wait_s
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= 3600:
            raise ConfigurationError(
                f"batch_wait_s must be a number >= 0 and at most 3600, got {wait_s!r}"
            )
        return BatchSettings(size=size, wait_s=float(wait))


def _element(annotation: Any, what: str, task_name: str) -> Any:
    if annotation in (inspect.Parameter.empty, Any):
        return Any
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in _LIST_ORIGINS and args and (origin is not tuple or args[-1] is Ellipsis):
        return args[0]
    raise ConfigurationError(
        f"micro-batched task {task_name!r}: its {what} must be a list (list[T]), "
        f"one entry per job, got {annotation!r}"
    )


def _without_exceptions(annotation: Any) -> Any:
    """``int | ValueError`` → ``int``: an entry that is an exception fails its item instead."""
    members = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    if typing.get_origin(annotation) is typing.Union:
        members = typing.get_args(annotation)
    if not members:
        return annotation
    kept = [m for m in members if not (isinstance(m, type) and issubclass(m, BaseException))]
    if not kept:
        return Any
    return functools.reduce(operator.or_, kept) if len(kept) > 1 else kept[0]


def item_signature(fn: Callable[..., Any], task_name: str) -> Callable[..., Any]:
    """A stand-in with the signature of *one* job: ``(texts: list[str]) -> list[V]`` gives
    ``(texts: str) -> V``, so enqueue checks and result decoding work per item."""
    params = list(inspect.signature(fn).parameters.values())
    if len(params) != 1 or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise ConfigurationError(
            f"micro-batched task {task_name!r} must take exactly one parameter, the list of items"
        )
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:
        raise ConfigurationError(
            f"task {task_name!r}: cannot resolve its type hints ({exc})"
        ) from exc
    name = params[0].name
    item_type = _element(hints.get(name, Any), "parameter", task_name)
    result_type = _without_exceptions(_element(hints.get("return", Any), "return type", task_name))

    def one_item(item: Any) -> Any:  # never called: it only carries the signature
        raise NotImplementedError

    parameter = inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    one_item.__signature__ = inspect.Signature([parameter])  # type: ignore[attr-defined]
    one_item.__annotations__ = {name: item_type, "return": result_type}
    return one_item


class ItemOutcome(msgspec.Struct):
    """One entry of a batch call's answer, as it crosses from the call to the worker."""

    result: msgspec.Raw = msgspec.Raw(b"null")
    error: ErrorInfo | None = None
    retryable: bool = True


class ItemsMismatch(Exception):
    """The call returned a different number of results than it was given items."""


def wrap_call(
    fn: Callable[..., Any],
    is_async: bool,
    describe: Callable[[BaseException], tuple[ErrorInfo, bool]],
) -> Callable[..., Any]:
    """The function a worker actually calls: the user's, with each entry turned into an
    ``ItemOutcome`` so that an item's exception travels as data and fails only that item."""

    def envelope(items: list[Any], results: Any) -> list[ItemOutcome]:
        if not isinstance(results, list | tuple) or len(results) != len(items):
            got = f"{len(results)} results" if isinstance(results, list | tuple) else repr(results)
            raise ItemsMismatch(
                f"a micro-batched task must return a list with one entry per item: "
                f"it got {len(items)} items and returned {got}"
            )
        out = []
        for entry in results:
            if isinstance(entry, BaseException):
                error, retryable = describe(entry)
                out.append(ItemOutcome(error=error, retryable=retryable))
            else:
                out.append(ItemOutcome(result=msgspec.Raw(msgspec.json.encode(entry))))
        return out

    if is_async:

        async def call_async(items: list[Any]) -> list[ItemOutcome]:
            return envelope(items, await fn(items))

        return call_async

    def call(items: list[Any]) -> list[ItemOutcome]:
        return envelope(items, fn(items))

    return call


_outcomes = msgspec.json.Decoder(list[ItemOutcome])


def split_results(encoded: bytes) -> list[ItemOutcome]:
    return _outcomes.decode(encoded)
