"""A job's files over HTTP: listed on the job, downloaded by its owner with a token, or
by anyone holding a signed link that expires (for an e-mail) without one.

A link names the job, the file and the owner, signed with the store's link key
(``itsdangerous``): a changed character fails the signature, an old link its expiry
(410), and a job deleted since takes its files with it (404). Files are streamed from
disk in chunks, never read whole, and sent as attachments that browsers do not render.
"""

from __future__ import annotations

import mimetypes
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, BinaryIO
from urllib.parse import quote

import anyio
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse
from itsdangerous import BadSignature, URLSafeSerializer

from offload.files import FileInfo
from offload.present import iso
from offload.web.deps import ERRORS, CallerDep, Settings

router = APIRouter(prefix="/api/v1", tags=["files"], responses=ERRORS)

#: How long a signed link works unless asked otherwise: a week.
LINK_TTL_S = 7 * 24 * 3600
MAX_LINK_TTL_S = 366 * 24 * 3600
_CHUNK = 256 * 1024
_SALT = "offload.file-link"
_FILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "the file"}
}


def _serializer(secret: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=_SALT)


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


def _send(handle: BinaryIO, info: FileInfo) -> StreamingResponse:
    kind = mimetypes.guess_type(info.name)[0] or "application/octet-stream"
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
    return _send(handle, info)


@router.post("/jobs/{job_id}/files/{name}/link")
async def sign_link(
    job_id: str,
    name: str,
    web: Settings,
    caller: CallerDep,
    expires_in_s: Annotated[int, Query(ge=60, le=MAX_LINK_TTL_S)] = LINK_TTL_S,
) -> dict[str, Any]:
    """A link to the file that works without a token until it expires (default a week)."""
    admin = web.app.admin.aio
    job = await admin.get(job_id, owner=caller.scope)
    handle, _ = await admin.open_file(job_id, name, owner=caller.scope)
    handle.close()
    expires_at = int(time.time()) + expires_in_s
    token = _serializer(await admin.link_secret()).dumps([job_id, name, job.owner, expires_at])
    return {"url": f"/api/v1/files/{token}", "expires_at": iso(expires_at)}


@router.get("/files/{token}", responses=_FILE, response_class=StreamingResponse)
async def signed_download(token: str, web: Settings) -> StreamingResponse:
    """A file through a signed link: no token needed, until the link expires."""
    admin = web.app.admin.aio
    try:
        job_id, name, owner, expires_at = _serializer(await admin.link_secret()).loads(token)
    except (BadSignature, ValueError, TypeError):
        raise HTTPException(404, "this link is not valid: it may have been cut short") from None
    if not isinstance(expires_at, int) or time.time() > expires_at:
        raise HTTPException(410, "this link has expired: ask for a new one")
    handle, info = await admin.open_file(str(job_id), str(name), owner=owner)
    return _send(handle, info)
