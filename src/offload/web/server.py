"""``create_app(app)``: the HTTP API as an ASGI application, errors as 4xx that say what
to do, a body size limit, the health routes outside ``/api/v1``, and its own requests
timed (the one-minute rule, as the app name ``api``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from offload.backends.base import BackendError
from offload.errors import ConfigurationError, CountChanged, InvalidQuery, JobNotFound
from offload.requests import RequestTimingASGI
from offload.web import batches, files, jobs, live, manage, metrics, outbox
from offload.web.dashboard import install as install_dashboard
from offload.web.deps import MAX_BODY_BYTES, WebSettings

if TYPE_CHECKING:
    from offload.app import Offload
    from offload.task import Task


def _version() -> str:
    try:
        return version("offload")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def create_app(
    app: Offload,
    *,
    public: Iterable[str | Task[..., Any]] = (),
    auth: bool = True,
    max_body_bytes: int = MAX_BODY_BYTES,
    dev_smtp_port: int | None = None,
    dashboard: bool = True,
) -> FastAPI:
    """The HTTP API of ``app``. Clients may start the tasks marked
    ``@app.task(public=True)`` and those named in ``public``; ``auth=False`` lets
    every caller act as an admin (``offload serve --insecure-no-auth``);
    ``dev_smtp_port``: receive mail on that port and show it at ``/dev/outbox``;
    ``dashboard``: serve the dashboard's pages at ``/`` (users log in, see ``offload user``)."""
    names = frozenset(t if isinstance(t, str) else t.name for t in public)
    unknown = sorted(names - set(app.tasks))
    if unknown:
        raise ConfigurationError(f"public names tasks the app does not have: {unknown}")
    web = WebSettings(app=app, public=names, auth=auth, max_body_bytes=max_body_bytes)

    box = None if dev_smtp_port is None else outbox.Outbox(port=dev_smtp_port)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if box is not None:
            box.start()
        try:
            yield
        finally:
            if box is not None:
                box.stop()
            await app.aclose()

    api = FastAPI(
        title="offload", version=_version(), lifespan=lifespan, default_response_class=AsciiJSON,
        description="Start long work, follow it live, fetch its result.",
    )  # fmt: skip
    api.state.offload = web
    if box is not None:
        api.state.outbox = box
        api.include_router(outbox.router)
    api.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    # outermost: a refused body is a request too; its event streams are left out
    api.add_middleware(RequestTimingASGI, offload_app=app, name="api")
    _errors(api)

    @api.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The server runs (liveness)."""
        return {"status": "ok"}

    @api.get("/readyz", tags=["health"], responses={503: {"description": "store unreachable"}})
    async def readyz() -> dict[str, str]:
        """The store answers (readiness)."""
        await app.backend.now()
        return {"status": "ok"}

    api.include_router(manage.router)  # first: /jobs/count is not a job's id
    api.include_router(jobs.router)
    api.include_router(batches.router)
    api.include_router(files.router)
    api.include_router(metrics.router)
    api.include_router(live.router)
    if dashboard:
        install_dashboard(api, web, outbox=box is not None)
    return api


class AsciiJSON(JSONResponse):
    """JSON with every non-ASCII character escaped: an answer that echoes a client's lone
    surrogate (a 422 names the bad input) must not fail to encode into a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False,
                          separators=(",", ":")).encode("ascii")  # fmt: skip


def _message(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return AsciiJSON({"detail": detail}, status_code=status, headers=headers)


def _errors(api: FastAPI) -> None:
    """The engine's errors as the answers a client can act on."""

    @api.exception_handler(RequestValidationError)
    async def unfit(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _message(422, jsonable_encoder(exc.errors()))

    @api.exception_handler(JobNotFound)
    async def not_found(_: Request, exc: JobNotFound) -> JSONResponse:
        return _message(404, str(exc))

    @api.exception_handler(LookupError)
    async def lookup(_: Request, exc: LookupError) -> JSONResponse:
        return _message(404, str(exc).strip("'\""))

    @api.exception_handler(InvalidQuery)
    async def invalid(_: Request, exc: InvalidQuery) -> JSONResponse:
        return _message(400, str(exc))

    @api.exception_handler(CountChanged)
    async def changed(_: Request, exc: CountChanged) -> JSONResponse:
        return _message(409, str(exc))

    @api.exception_handler(ValueError)
    async def value(_: Request, exc: ValueError) -> JSONResponse:
        return _message(422, str(exc))

    @api.exception_handler(TypeError)
    async def type_error(_: Request, exc: TypeError) -> JSONResponse:
        return _message(422, str(exc))

    @api.exception_handler(BackendError)
    async def store_down(_: Request, exc: BackendError) -> JSONResponse:
        return _message(503, f"the job store did not answer: {exc}", {"Retry-After": "5"})


class BodyLimit:
    """413 for a request body over ``max_bytes``, counted as it arrives (a missing or
    false Content-Length changes nothing)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the request body is over {self.max_bytes} bytes; send ids, not contents"
        await _message(413, detail)(scope, receive, send)


class _TooLarge(Exception):
    pass
