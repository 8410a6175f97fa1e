"""The HTTP API: ``offload serve APP``, or ``create_app(app)`` mounted in your own ASGI app.

Built on the management API (``app.admin``) and its live events only; nothing below it
imports this package. Needs the ``web`` extra: ``pip install "offload[web]"``.
"""

from offload.web.deps import WebSettings
from offload.web.server import create_app

__all__ = ["WebSettings", "create_app"]
