"""The one-minute rule: time every HTTP request of any web application, count those over
a threshold (60 s by default), and prove that none took longer.

``RequestTimingASGI`` wraps an ASGI application (FastAPI, Starlette), ``RequestTimingWSGI``
a WSGI one (Flask, Django). Each counts in memory, per minute, and writes to the offload
store in the background, so every process and machine adds up; read it back with
``offload requests APP``, ``app.admin.requests(since=...)`` or ``GET /metrics``.
"""

from __future__ import annotations

from offload.admin.requests import RequestStats, RequestTotal, SlowRequest
from offload.requests.asgi import RequestTimingASGI
from offload.requests.timer import DEFAULT_THRESHOLD_S, RequestTimer
from offload.requests.wsgi import RequestTimingWSGI

__all__ = [
    "DEFAULT_THRESHOLD_S",
    "RequestStats",
    "RequestTimer",
    "RequestTimingASGI",
    "RequestTimingWSGI",
    "RequestTotal",
    "SlowRequest",
]
