"""A job's files over HTTP: listed on the job, downloaded by its owner with a token, or
by anyone holding a signed link that expires (``links.py``): a file's, or a job's page
with its outcome and links to its files. A changed character fails the signature (404),
an old link says it expired (410), and a job deleted since takes its files with it
(404). Files are streamed from disk in chunks, never read whole, and sent as
attachments that browsers do not render.
"""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator
from typing import Annotated, Any, BinaryIO
from urllib.parse import quote

import anyio
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse

from offload.files import FileInfo
from offload.links import LINK_TTL_S, MAX_LINK_TTL_S, LinkExpired, LinkInvalid, open_link, sign
from offload.present import iso, job_dict
from offload.web.access import Caller
from offload.web.deps import ERRORS, CallerDep, Settings

router = APIRouter(prefix="/api/v1", tags=["files"], responses=ERRORS)

_CHUNK = 256 * 1024
#: What a signed job link shows: the outcome, never the arguments or the internals.
_SHARED = ("id", "task", "state", "progress", "progress_message", "result", "error",
           "created_at", "started_at", "finished_at", "batch")  # fmt: skip
_FILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "the file"}
}


def file_json(job_id: str, info: FileInfo) -> dict[str, Any]:
    return {
        "name": info.name, "size": info.size, "created_at": iso(info.created_at),
        "links": {"download": f"/api/v1/jobs/{job_id}/files/{quote(info.name)}",
                  "sign": f"/api/v1/jobs/{job_id}/files/{quote(info.name)}/link"},
    }  # fmt: skip


async def _chunks(handle: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while chunk := await anyio.to_thread.run_sync(handle.read, _CHUNK):
            yield chunk
    finally:
        handle.close()


def _ascii(name: str) -> str:
    """The name for clients that read only ``filename=`` (curl -J): ASCII, no quotes."""
    return "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)


#: Types a job's file is served as; any other is ``application/octet-stream``, so that a file
#: named ``x.js`` or ``x.html`` can never run as a script or a page of this site.
SAFE_TYPES = frozenset({
    "application/pdf", "application/zip", "application/json", "text/plain", "text/csv",
    "image/png", "image/jpeg", "image/gif", "image/webp",
})  # fmt: skip


def send_file(handle: BinaryIO, info: FileInfo) -> StreamingResponse:
    kind = mimetypes.guess_type(info.name)[0] or "application/octet-stream"
    if kind not in SAFE_TYPES:  # never a script or a page served from this site
        kind = "application/octet-stream"
    headers = {
        "Content-Length": str(info.size),
        "Content-Disposition": f'attachment; filename="{_ascii(info.name)}"; '
        f"filename*=UTF-8''{quote(info.name)}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, no-store",
    }
    return StreamingResponse(_chunks(handle), media_type=kind, headers=headers)


@router.get("/jobs/{job_id}/files")
async def list_files(job_id: str, web: Settings, caller: CallerDep) -> list[dict[str, Any]]:
    """The files the job's task attached."""
    found = await web.app.admin.aio.files(job_id, owner=caller.scope)
    return [file_json(job_id, info) for info in found]


@router.get("/jobs/{job_id}/files/{name}", responses=_FILE, response_class=StreamingResponse)
async def download(job_id: str, name: str, web: Settings, caller: CallerDep) -> StreamingResponse:
    """One file, streamed."""
    handle, info = await web.app.admin.aio.open_file(job_id, name, owner=caller.scope)
    return send_file(handle, info)


ExpiresIn = Annotated[int, Query(ge=60, le=MAX_LINK_TTL_S)]


async def _link(
    web: Settings, caller: Caller, job_id: str, name: str | None, expires_in_s: int
) -> dict[str, Any]:
    """A signed link to the job's page (``name`` None) or to one of its files."""
    caller.require_action("share files" if name else "share jobs")
    admin = web.app.admin.aio
    job = await admin.get(job_id, owner=caller.scope)
    if name is not None:  # it must exist: a link to nothing helps nobody
        handle, _ = await admin.open_file(job_id, name, owner=caller.scope)
        handle.close()
    token, expires_at = sign(await admin.link_secret(), job_id, job.owner, name, expires_in_s)
    where = "files" if name is not None else "shared"
    return {"url": f"/api/v1/{where}/{token}", "expires_at": iso(expires_at)}


@router.post("/jobs/{job_id}/files/{name}/link")
async def sign_link(
    job_id: str, name: str, web: Settings, caller: CallerDep, expires_in_s: ExpiresIn = LINK_TTL_S
) -> dict[str, Any]:
    """A link to the file that works without a token until it expires (default a week)."""
    return await _link(web, caller, job_id, name, expires_in_s)


@router.post("/jobs/{job_id}/link")
async def sign_job_link(
    job_id: str, web: Settings, caller: CallerDep, expires_in_s: ExpiresIn = LINK_TTL_S
) -> dict[str, Any]:
    """A link to the job's page (state, result, files) that works without a token."""
    return await _link(web, caller, job_id, None, expires_in_s)


async def _opened(web: Settings, token: str) -> tuple[str, str | None, str | None, int]:
    try:
        return open_link(await web.app.admin.aio.link_secret(), token)
    except LinkInvalid as exc:
        raise HTTPException(404, str(exc)) from None
    except LinkExpired as exc:
        raise HTTPException(410, str(exc)) from None


@router.get("/files/{token}", responses=_FILE, response_class=StreamingResponse)
async def signed_download(token: str, web: Settings) -> StreamingResponse:
    """A file through a signed link: no token needed, until the link expires."""
    job_id, name, owner, _ = await _opened(web, token)
    if name is None:
        raise HTTPException(404, "this link opens a job, not a file: /api/v1/shared/...")
    handle, info = await web.app.admin.aio.open_file(job_id, name, owner=owner)
    return send_file(handle, info)


@router.get("/shared/{token}")
async def shared_job(token: str, web: Settings) -> dict[str, Any]:
    """A job through a signed link: its state, result or error, and links to its files
    that last as long as this one."""
    job_id, name, owner, expires_at = await _opened(web, token)
    admin = web.app.admin.aio
    if name is not None:
        raise HTTPException(404, "this link opens a file: /api/v1/files/...")
    job = await admin.get(job_id, owner=owner)
    task = web.app.tasks.get(job.task)
    shown = {k: v for k, v in job_dict(job, with_traceback=False, task=task).items()
             if k in _SHARED}  # fmt: skip
    shown["link_expires_at"] = iso(expires_at)
    files = []
    secret = await admin.link_secret()
    for info in await admin.files(job_id, owner=owner):
        file_token, _ = sign(secret, job_id, owner, info.name, expires_at=expires_at)
        files.append({"name": info.name, "size": info.size,
                      "url": f"/api/v1/files/{file_token}"})  # fmt: skip
    shown["files"] = files
    return shown
