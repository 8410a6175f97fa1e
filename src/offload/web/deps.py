"""What every route asks for: the server's settings and the caller."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel

from offload.tokens import split_token
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


class Problem(BaseModel):
    """An error answer: ``detail`` says what to do (a list of fields for a 422)."""

    detail: str | list[dict[str, Any]]


#: The answers every ``/api/v1`` route may give besides its own success.
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": why}
    for status, why in (
        (400, "a filter, cursor or action that cannot be used as written"),
        (401, "no token, or one that is unknown or revoked"),
        (403, "this token's role may not do this"),
        (404, "no such job or batch, or not yours"),
        (409, "more jobs match than the count given"),
        (413, "the request body is too large"),
        (422, "a field that does not fit"),
        (429, "too many failed authentications from this address"),
        (503, "the job store did not answer; try again"),
    )
}

#: Event streams one server process keeps open at most, and per token (or owner).
MAX_STREAMS = 200
MAX_STREAMS_PER_CALLER = 10

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
    #: Open event streams in this process: each holds a store subscription.
    max_streams: int = MAX_STREAMS
    max_streams_per_caller: int = MAX_STREAMS_PER_CALLER
    streams: dict[str, int] = field(default_factory=dict)

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
    token = bearer(request)
    if token is None:
        raise refused("send a token: Authorization: Bearer off_... (offload token create)")
    wait_s = web.limiter.wait_s(address)
    if wait_s and split_token(token) is None:
        raise too_many(wait_s)  # a guesser: not even the store is asked
    info = await web.app.admin.aio.authenticate(token)
    if info is None:
        web.limiter.failed(address)
        raise too_many(wait_s) if wait_s else refused("this token is unknown, revoked or mistyped")
    return caller_of(info)  # a valid token passes even from an address others abuse


CallerDep = Annotated[Caller, Depends(caller)]
