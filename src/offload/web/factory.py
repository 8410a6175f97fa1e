"""The ASGI app each ``offload serve`` process builds from its environment (uvicorn
starts ``--workers`` processes, and each imports the app again)."""

from __future__ import annotations

import os

from fastapi import FastAPI

from offload.loader import load_app
from offload.web.server import create_app

APP_ENV = "OFFLOAD_SERVE_APP"
INSECURE_ENV = "OFFLOAD_SERVE_INSECURE_NO_AUTH"
PUBLIC_ENV = "OFFLOAD_SERVE_PUBLIC"
DEV_SMTP_ENV = "OFFLOAD_SERVE_DEV_SMTP_PORT"


def from_environment() -> FastAPI:
    app = load_app(os.environ[APP_ENV])
    url = os.environ.get("OFFLOAD_URL")
    if url and app.url != url:
        app.use_url(url)
    public = [name for name in os.environ.get(PUBLIC_ENV, "").split(",") if name]
    dev_smtp = os.environ.get(DEV_SMTP_ENV)
    return create_app(app, public=public, auth=os.environ.get(INSECURE_ENV) != "1",
                      dev_smtp_port=int(dev_smtp) if dev_smtp else None)  # fmt: skip
