"""Finding the application from ``module:attribute``, the way uvicorn does: the attribute
is an ``Offload`` app or a function that takes nothing and returns one."""

from __future__ import annotations

import importlib
import os
import sys

from offload.app import Offload
from offload.errors import ConfigurationError


def load_app(spec: str) -> Offload:
    module_name, sep, attribute = spec.partition(":")
    if not module_name or (sep and not attribute):
        raise ConfigurationError(
            f"APP must be module:attribute (like myproject.jobs:app), got {spec!r}"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot import {module_name!r} ({exc}); run from the folder that contains it "
            "or set PYTHONPATH"
        ) from exc
    attribute = attribute or "app"
    app = getattr(module, attribute, None)
    if app is None:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attribute!r}")
    if callable(app) and not isinstance(app, Offload):
        app = app()  # a factory, like myproject.jobs:build_app (no module-level app needed)
    if not isinstance(app, Offload):
        raise ConfigurationError(f"{spec} is a {type(app).__name__}, not an offload.Offload app")
    return app
