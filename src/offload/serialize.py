"""JSON on the wire, checked against the task's type hints on both sides.

Arguments are checked when enqueued, so a caller's mistake fails in the
caller; the worker decodes each argument to its annotated type, so a task
that takes a dataclass or a datetime receives one. Nothing is ever unpickled.
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from offload.errors import ConfigurationError, InvalidArguments

_encoder = msgspec.json.Encoder()


def _has_non_finite(value: object, depth: int = 0) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if depth > 100:  # deeper than that, the encoder would have refused it
        return False
    if isinstance(value, dict):
        return any(_has_non_finite(v, depth + 1) for v in value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_has_non_finite(v, depth + 1) for v in value)
    if isinstance(value, msgspec.Struct):
        return any(_has_non_finite(getattr(value, f), depth + 1) for f in value.__struct_fields__)
    return False


_raw_payload = msgspec.json.Decoder(tuple[list[msgspec.Raw], dict[str, msgspec.Raw]])
_UNCHECKED = (Any, inspect.Parameter.empty, object)


class PayloadError(ValueError):
    """A stored payload cannot be decoded for this task: the job is dead-lettered."""


def encode(value: object) -> bytes:
    return _encoder.encode(value)


class ArgsCodec:
    """Encodes and decodes one task's ``(args, kwargs)`` and its result."""

    def __init__(self, fn: Callable[..., Any], task_name: str) -> None:
        self.task_name = task_name
        self.signature = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:
            raise ConfigurationError(
                f"task {task_name!r}: cannot resolve its type hints ({exc})"
            ) from exc
        self._types: dict[str, Any] = {}
        self._var_positional: str | None = None
        self._var_keyword: str | None = None
        for name, param in self.signature.parameters.items():
            annotation = hints.get(name, Any)
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                self._var_positional = name
            elif param.kind is inspect.Parameter.VAR_KEYWORD:
                self._var_keyword = name
            self._types[name] = annotation
        # The common call, every parameter given by position and nothing else, skips
        # Signature.bind (the slowest step of an enqueue) and checks each value directly.
        simple = all(
            p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            for p in self.signature.parameters.values()
        )
        self._positional: list[tuple[str, Any]] | None = (
            [(name, self._types[name]) for name in self.signature.parameters] if simple else None
        )
        self.return_type: Any = hints.get("return", Any)
        self._result_decoder = msgspec.json.Decoder(
            Any if self.return_type in (None, type(None)) else self.return_type
        )

    def _bind(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], partial: bool = False
    ) -> inspect.BoundArguments:
        try:
            if partial:
                return self.signature.bind_partial(*args, **kwargs)
            return self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"task {self.task_name!r}{self.signature}: {exc}") from exc

    def encode_args(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], *, partial: bool = False
    ) -> bytes:
        """Check the arguments against the type hints and encode them; ``partial`` allows
        leading arguments that a chain will supply later (the previous step's result)."""
        positional = self._positional
        if positional is not None and not kwargs and len(args) == len(positional):
            for (name, annotation), value in zip(positional, args, strict=True):
                self._check(name, annotation, value)
            return self._encode(args, kwargs)
        bound = self._bind(args, kwargs, partial)
        for name, value in bound.arguments.items():
            self._check(name, self._checked_type(name), value)
        return self._encode(args, kwargs)

    def _checked_type(self, name: str) -> Any:
        """What a bound argument's value must convert to (a ``*args`` one is a tuple)."""
        annotation = self._types[name]
        if annotation in _UNCHECKED:
            return annotation
        if name == self._var_positional:
            return tuple[annotation, ...]  # type: ignore[valid-type]
        if name == self._var_keyword:
            return dict[str, annotation]  # type: ignore[valid-type]
        return annotation

    def problems(self, args: list[Any], kwargs: dict[str, Any]) -> list[tuple[list[Any], str]]:
        """What is wrong with these arguments, as (path, message) pairs (none: they fit):
        a path starts at the parameter's name and goes into the value, for a client that
        must point at the field it sent."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            return [([], f"the arguments do not fit {self.task_name}{self.signature}: {exc}")]
        found = []
        for name, value in bound.arguments.items():
            annotation = self._checked_type(name)
            if annotation in _UNCHECKED:
                continue
            try:
                msgspec.convert(value, annotation)
            except (msgspec.ValidationError, TypeError) as exc:
                message, _, where = str(exc).partition(" - at `$")
                found.append(([name, *_path(where.rstrip("`"))], message))
        return found

    def _check(self, name: str, annotation: Any, value: Any) -> None:
        if annotation in _UNCHECKED:
            return
        try:
            msgspec.convert(value, annotation)
        except UnicodeEncodeError as exc:
            raise self._not_unicode(exc) from exc
        except (msgspec.ValidationError, TypeError) as exc:
            raise InvalidArguments(f"task {self.task_name!r}, argument {name!r}: {exc}") from exc

    def _encode(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        try:
            return _encoder.encode((args, kwargs))
        except UnicodeEncodeError as exc:
            raise self._not_unicode(exc) from exc
        except (TypeError, msgspec.EncodeError) as exc:
            raise InvalidArguments(
                f"task {self.task_name!r}: arguments must be JSON-encodable ({exc}); "
                "pass ids or paths rather than open files, connections or objects"
            ) from exc

    def _not_unicode(self, exc: UnicodeEncodeError) -> InvalidArguments:
        """A lone surrogate (a file name from ``os.listdir``, say): JSON cannot hold it."""
        bad = exc.object[exc.start : exc.end]
        return InvalidArguments(
            f"task {self.task_name!r}: an argument holds text that is not valid Unicode "
            f"({bad!r} at position {exc.start} of {exc.object[:80]!r}); JSON cannot hold it: "
            "clean it first, e.g. text.encode('utf-8', 'surrogateescape').decode('utf-8', "
            "'replace')"
        )

    def decode_args(self, payload: bytes) -> tuple[list[Any], dict[str, Any]]:
        try:
            raw_args, raw_kwargs = _raw_payload.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise PayloadError(f"payload is not [args, kwargs] JSON: {exc}") from exc
        params = list(self.signature.parameters.values())
        args: list[Any] = []
        for index, raw in enumerate(raw_args):
            if index < len(params) and params[index].kind in (
                inspect.Parameter.POSITIONAL_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
            ):
                args.append(self._decode_one(params[index].name, raw))
            elif self._var_positional is not None:
                args.append(self._decode_one(self._var_positional, raw))
            else:
                raise PayloadError(f"too many positional arguments for {self.signature}")
        kwargs = {}
        for name, raw in raw_kwargs.items():
            known = name in self._types and name not in (self._var_positional, self._var_keyword)
            kwargs[name] = self._decode_one(name if known else self._var_keyword or name, raw)
        if self._positional is not None and not kwargs and len(args) == len(self._positional):
            return args, kwargs  # every parameter given once, by position: it fits
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise PayloadError(f"arguments do not fit {self.signature}: {exc}") from exc
        return args, kwargs

    def _decode_one(self, name: str, raw: msgspec.Raw) -> Any:
        annotation = self._types.get(name, Any)
        if annotation is inspect.Parameter.empty:
            annotation = Any
        try:
            return msgspec.json.decode(raw, type=annotation)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise PayloadError(f"argument {name!r}: {exc}") from exc
        except Exception as exc:  # a type's own check (__post_init__) raised: still bad input
            raise PayloadError(f"argument {name!r}: {type(exc).__name__}: {exc}") from exc

    def encode_result(self, value: object) -> bytes:
        try:
            encoded = _encoder.encode(value)
        except (TypeError, msgspec.EncodeError) as exc:
            raise TypeError(
                f"task {self.task_name!r} returned a value that is not JSON-encodable: {exc}"
            ) from exc
        except UnicodeEncodeError as exc:
            raise TypeError(
                f"task {self.task_name!r} returned text that is not valid Unicode: {exc}"
            ) from exc
        # JSON has no NaN or infinity: msgspec writes null, which would read back as a
        # different value (or fail to decode as the declared type). Look only when a null
        # appears, so ordinary results cost nothing more.
        if b"null" in encoded and _has_non_finite(value):
            raise TypeError(
                f"task {self.task_name!r} returned NaN or infinity, which JSON cannot hold; "
                "return None or a string for it"
            )
        return encoded

    def decode_result(self, data: bytes) -> Any:
        return self._result_decoder.decode(data)


def _path(where: str) -> list[str | int]:
    """msgspec's ``.a[0].b`` as ["a", 0, "b"]."""
    parts: list[str | int] = []
    for piece in where.replace("[", ".[").split("."):
        if not piece:
            continue
        if piece.startswith("[") and piece.endswith("]") and piece[1:-1].lstrip("-").isdigit():
            parts.append(int(piece[1:-1]))
        else:
            parts.append(piece.strip("[]`"))
    return parts
