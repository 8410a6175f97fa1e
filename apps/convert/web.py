"""The service's pages: upload, "my conversions", one upload, the page an e-mailed link
opens, and the archive's download. Built on offload's public API only: ``app.batch``
to enqueue, ``app.admin.aio`` to read, ``offload.links`` to check a link.

Run it with ``python -m apps.convert`` (everything) or
``uvicorn --factory apps.convert.web:create_app`` (pages only).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from apps.convert.guards import BodyTooLarge, Quota, Streams, disk_refusal, limited_receive
from apps.convert.intake import SUPPORTED
from apps.convert.live import event_stream
from apps.convert.sessions import Sessions, secure_headers
from apps.convert.spool import Manifest, is_upload_id
from apps.convert.tasks import Service, build_service
from apps.convert.uploads import UploadError, accept, check_choice
from apps.convert.views import upload_status
from offload import JobNotFound
from offload.links import LinkExpired, LinkInvalid, open_link
from offload.requests import RequestTimingASGI

HERE = Path(__file__).resolve().parent
log = logging.getLogger("apps.convert")
_FORM_SLACK_BYTES = 1024 * 1024
#: Uploads are refused (503) rather than fill the disk below this.
_DISK_FLOOR_BYTES = 1024 * 1024 * 1024


def create_app(service: Service | None = None, *, outbox: Any = None) -> FastAPI:
    """The pages as an ASGI app; ``outbox``: a development mail catcher shown at
    ``/dev/outbox`` (``offload.web.outbox.Outbox``)."""
    service = service or build_service()
    templates = Jinja2Templates(directory=HERE / "templates")
    state: dict[str, Sessions] = {}
    limits = service.settings.limits
    quota = Quota(limits.uploads_per_hour, limits.mb_per_hour * 2**20)
    streams = Streams()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        state["sessions"] = Sessions(await service.app.admin.aio.link_secret())
        if outbox is not None:
            outbox.start()
        try:
            yield
        finally:
            if outbox is not None:
                outbox.stop()

    web = FastAPI(title="Document conversion", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)  # fmt: skip
    web.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    # The one-minute rule, measured: every request's duration, counted in the store
    # (``offload requests``, ``/metrics``), the event stream left out.
    web.add_middleware(RequestTimingASGI, offload_app=service.app, name="convert")
    if outbox is not None:
        from offload.web import outbox as outbox_page

        web.state.outbox = outbox
        web.include_router(outbox_page.router)

    @web.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        if not request.url.path.startswith("/dev/"):
            secure_headers(response)
        return response

    def render(request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        sessions = state["sessions"]
        session, fresh = sessions.current_or_new(request)
        context = {"csrf": sessions.csrf_token(session), "limits": service.settings.limits,
                   "night": service.settings.night_window,
                   **context}  # fmt: skip
        response = templates.TemplateResponse(request, name, context, status_code=code)
        if fresh:
            sessions.set_cookie(request, response, session)
        return response

    def owner(request: Request) -> str:
        session = state["sessions"].session_id(request)
        if session is None:
            raise HTTPException(404, "not found")
        return state["sessions"].owner(session)

    def own_manifest(request: Request, upload: str) -> Manifest:
        manifest = service.spool.load(upload) if is_upload_id(upload) else None
        if manifest is None or manifest.owner != owner(request):
            raise HTTPException(404, "no such upload (it may have expired)")
        return manifest

    @web.get("/", response_class=HTMLResponse)
    async def upload_page(request: Request) -> HTMLResponse:
        return render(request, "upload.html", supported=SUPPORTED, error=None)

    @web.post("/uploads", response_model=None)
    async def upload(request: Request) -> Response:
        sessions = state["sessions"]
        limits = service.settings.limits
        length = int(request.headers.get("content-length") or 0)
        wants_json = "application/json" in request.headers.get("accept", "")

        def refuse(message: str, status: int) -> Response:
            if wants_json:
                return JSONResponse({"detail": message}, status_code=status)
            return render(request, "upload.html", status, supported=SUPPORTED, error=message)

        too_large = f"at most {limits.max_total_bytes // 2**20} MB in one go"
        if length > limits.max_total_bytes + _FORM_SLACK_BYTES:
            return refuse(too_large, 413)
        client = request.client.host if request.client else "unknown"
        refusal = quota.refusal(client, length) or disk_refusal(
            service.settings.data_dir, max(length, limits.max_total_bytes), _DISK_FLOOR_BYTES
        )
        if refusal:
            return refuse(refusal, 429 if "an hour" in refusal else 503)
        # a chunked body says no length: it is cut off at the limit all the same
        bounded = Request(
            request.scope,
            limited_receive(request.receive, limits.max_total_bytes + _FORM_SLACK_BYTES),
        )
        try:
            form = await bounded.form(max_files=limits.max_files * 5, max_fields=20)
        except BodyTooLarge:
            return refuse(too_large, 413)
        except Exception:  # Starlette's MultiPartException: a malformed form
            return refuse("the form could not be read: send it again from the page (a file "
                          "name may be too long)", 400)  # fmt: skip
        session = sessions.session_id(request)
        if not sessions.csrf_ok(session, str(form.get("csrf", ""))):
            await form.close()
            return refuse("this form has expired: reload the page and send it again (the "
                          "page needs its cookie: allow cookies for this site)", 403)  # fmt: skip
        files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        try:
            choice = check_choice(str(form.get("target", "pdf")), str(form.get("when", "now")),
                                  str(form.get("email", "")))  # fmt: skip
            assert session is not None
            manifest = await accept(service, sessions.owner(session), files, choice)
        except UploadError as exc:
            return refuse(str(exc), exc.status)
        finally:
            await form.close()
        page = f"/uploads/{manifest.upload}"
        if wants_json:
            return JSONResponse({"upload": manifest.upload, "page": page,
                                 "status": f"{page}/status"}, 202, {"Location": page})  # fmt: skip
        return RedirectResponse(page, status_code=303)

    @web.get("/uploads", response_class=HTMLResponse)
    async def my_conversions(request: Request) -> HTMLResponse:
        session = state["sessions"].session_id(request)
        owner = None if session is None else state["sessions"].owner(session)
        manifests = [] if owner is None else service.spool.of_owner(owner)
        uploads = [await upload_status(service, m) for m in manifests]
        return render(request, "uploads.html", uploads=uploads)

    @web.get("/uploads/{upload}", response_class=HTMLResponse)
    async def upload_page_one(request: Request, upload: str) -> HTMLResponse:
        status = await upload_status(service, own_manifest(request, upload))
        return render(request, "upload_one.html", status=status,
                      download=f"/uploads/{upload}/converted.zip")  # fmt: skip

    @web.get("/uploads/{upload}/status")
    async def status_json(request: Request, upload: str) -> dict[str, Any]:
        return await upload_status(service, own_manifest(request, upload))

    @web.get("/uploads/{upload}/converted.zip")
    async def download_own(request: Request, upload: str) -> StreamingResponse:
        manifest = own_manifest(request, upload)
        return await _archive(manifest)

    @web.get("/events", response_model=None)
    async def events(request: Request) -> Response:
        who = owner(request)
        if not streams.enter(who):
            return JSONResponse({"detail": "too many live pages open: close some"}, 429)

        async def counted() -> Any:
            try:
                async for chunk in event_stream(service.app, who):
                    yield chunk
            finally:
                streams.leave(who)

        return StreamingResponse(counted(), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})  # fmt: skip

    async def by_link(token: str) -> Manifest:
        try:
            job_id, _, link_owner, _ = open_link(await service.app.admin.aio.link_secret(), token)
        except LinkInvalid:
            raise HTTPException(404, "this link is not valid: it may have been cut short") from None
        except LinkExpired:
            raise HTTPException(410, "this link has expired, and the files with it") from None
        try:
            job = await service.app.admin.aio.get(job_id, owner=link_owner)
        except JobNotFound:
            raise HTTPException(410, "these files have expired and were removed") from None
        manifest = _manifest_of(service, job)
        if manifest is None or manifest.owner != link_owner:
            raise HTTPException(410, "these files have expired and were removed")
        return manifest

    @web.get("/d/{token}", response_class=HTMLResponse)
    async def shared_page(request: Request, token: str) -> HTMLResponse:
        manifest = await by_link(token)
        status = await upload_status(service, manifest)
        return render(request, "upload_one.html", status=status, shared=True,
                      download=f"/d/{token}/converted.zip")  # fmt: skip

    @web.get("/d/{token}/converted.zip")
    async def shared_download(token: str) -> StreamingResponse:
        return await _archive(await by_link(token))

    async def _archive(manifest: Manifest) -> StreamingResponse:
        try:
            handle, info = await service.app.admin.aio.open_file(
                manifest.archive_job, "converted.zip", owner=manifest.owner
            )
        except (LookupError, JobNotFound):
            raise HTTPException(404, "the archive is not ready yet, or has expired") from None

        async def chunks() -> Any:
            try:
                while chunk := handle.read(256 * 1024):
                    yield chunk
            finally:
                handle.close()

        name = f"converted-{manifest.upload[-8:]}.zip"
        return StreamingResponse(chunks(), media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Length": str(info.size)})  # fmt: skip

    @web.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return render(request, "error.html", exc.status_code, message=exc.detail)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @web.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        response = render(request, "error.html", 500, message="something went wrong on our "
                          "side; your files are safe: try again in a moment")  # fmt: skip
        secure_headers(response)  # this answer bypasses the middleware that adds them
        return response

    return web


def _manifest_of(service: Service, job: Any) -> Manifest | None:
    import json

    try:
        upload = json.loads(job.payload)[1]["upload"]
    except (ValueError, IndexError, KeyError, TypeError):
        return None
    return service.spool.load(upload) if isinstance(upload, str) else None
