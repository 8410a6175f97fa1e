"""Opening a backend from a URL.

Backends are named by import path, so that the core never imports a concrete
engine (or its driver) until a URL asks for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from offload.backends.base import Backend, BackendError
from offload.backends.urls import display_url

#: URL scheme -> (module, factory, extra to install for it)
SCHEMES: dict[str, tuple[str, str, str | None]] = {
    "sqlite": ("offload.backends.sqlite", "sqlite_backend", None),
    "memory": ("offload.backends.memory", "memory_backend", None),
    "postgresql": ("offload.backends.postgres", "postgres_backend", "postgres"),
    "postgres": ("offload.backends.postgres", "postgres_backend", "postgres"),
    "redis": ("offload.backends.redis", "redis_backend", "redis"),
    "rediss": ("offload.backends.redis", "redis_backend", "redis"),
    "unix": ("offload.backends.redis", "redis_backend", "redis"),  # a Redis Unix socket
}


def open_backend(url: str, clock: Callable[[], float] | None = None) -> Backend:
    """``clock`` (tests only) replaces the engine's own clock; None keeps the engine's."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError(
            f"unsupported offload URL {display_url(url)!r}: it must start with one of "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    module_name, factory_name, extra = SCHEMES[scheme]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if extra is None or not exc.name or exc.name.startswith("offload"):
            raise BackendError(f"the {scheme}:// backend is not available in this offload") from exc
        raise BackendError(
            f"the {scheme}:// backend needs {exc.name!r}: pip install 'offload[{extra}]'"
        ) from exc
    factory = getattr(module, factory_name)
    return cast(Backend, factory(url, clock=clock))


__all__ = ["SCHEMES", "Backend", "BackendError", "open_backend"]
