"""What every route asks for: the server's settings and the caller."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from offload.web.access import (
    NOBODY_CHECKS,
    Caller,
    FailureLimiter,
    bearer,
    caller_of,
    refused,
    too_many,
)

if TYPE_CHECKING:
    from offload.app import Offload
    from offload.task import Task

#: Largest request body accepted (bytes): a job's arguments are ids and options, not files.
MAX_BODY_BYTES = 1024 * 1024


@dataclass
class WebSettings:
    """How ``create_app`` serves an app."""

    app: Offload
    #: Names of tasks clients may start, besides those marked ``@app.task(public=True)``.
    public: frozenset[str] = frozenset()
    #: False only with ``offload serve --insecure-no-auth``: every caller is an admin.
    auth: bool = True
    max_body_bytes: int = MAX_BODY_BYTES
    limiter: FailureLimiter = field(default_factory=FailureLimiter)

    def public_task(self, name: str) -> Task[..., object] | None:
        task = self.app.tasks.get(name)
        if task is None or not (task.defaults.public or name in self.public):
            return None
        return task


def settings(request: Request) -> WebSettings:
    found: WebSettings = request.app.state.offload
    return found


Settings = Annotated[WebSettings, Depends(settings)]


async def caller(request: Request, web: Settings) -> Caller:
    if not web.auth:
        return NOBODY_CHECKS
    address = request.client.host if request.client is not None else "unknown"
    wait_s = web.limiter.wait_s(address)
    if wait_s:
        raise too_many(wait_s)
    token = bearer(request)
    if token is None:
        raise refused("send a token: Authorization: Bearer off_... (offload token create)")
    info = await web.app.admin.aio.authenticate(token)
    if info is None:
        web.limiter.failed(address)
        raise refused("this token is unknown, revoked or mistyped")
    return caller_of(info)


CallerDep = Annotated[Caller, Depends(caller)]
