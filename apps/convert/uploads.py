"""One upload: every file checked by its content and size, the acceptable ones stored in
the spool and enqueued as one batch (its callback builds the archive, its notice sends
the e-mail), the rest listed with the reason they were refused. Nothing here converts:
the request answers as soon as the files are stored."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import UploadFile

from apps.convert.converters import TARGETS
from apps.convert.intake import Refused, sniff
from apps.convert.spool import Entry, Manifest
from apps.convert.tasks import Document, Service
from offload.notices import Email

_HEAD_BYTES = 8192
MAX_NAME_CHARS = 200


class UploadError(ValueError):
    """The whole upload is refused (nothing was kept), with what to change."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Choice:
    target: str
    when: str
    email: str


def check_choice(target: str, when: str, email: str) -> Choice:
    if target not in TARGETS:
        raise UploadError(f"choose PDF or PNG as the output, not {target[:20]!r}")
    if when not in ("now", "tonight"):
        raise UploadError("choose when to convert: now or tonight")
    email = email.strip()
    if email:
        try:
            email = Email(to=email).to
        except Exception as exc:  # offload says what is wrong with it
            raise UploadError(f"the e-mail address is not valid: {exc}") from None
    return Choice(target=target, when=when, email=email)


def _display_name(raw: str | None, index: int) -> str:
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:MAX_NAME_CHARS] or f"file {index + 1}"


async def accept(service: Service, owner: str, files: list[UploadFile], choice: Choice) -> Manifest:
    """Store and enqueue; raises ``UploadError`` when nothing can be converted."""
    limits = service.settings.limits
    files = [f for f in files if f.filename or (f.size or 0) > 0]
    if not files:
        raise UploadError("choose at least one file to convert")
    if len(files) > limits.max_files:
        raise UploadError(
            f"at most {limits.max_files} files in one go: you sent {len(files)}; "
            "send the rest in another upload"
        )
    total = sum(f.size or 0 for f in files)
    if total > limits.max_total_bytes:
        raise UploadError(
            f"at most {limits.max_total_bytes // 2**20} MB in one go: these files are "
            f"{total / 2**20:.0f} MB", status=413,
        )  # fmt: skip
    upload = str(service.app.new_id())
    manifest = Manifest(upload=upload, owner=owner, created_at=time.time(),
                        target=choice.target, when=choice.when, email=choice.email)  # fmt: skip
    service.spool.create(manifest)
    try:
        for index, file in enumerate(files):  # file I/O off the event loop
            manifest.files.append(await asyncio.to_thread(_store, service, upload, index, file))
        if not any(e.kind for e in manifest.files):
            reasons = "; ".join(f"{e.name}: {e.refused}" for e in manifest.files[:5])
            raise UploadError(f"none of these files can be converted ({reasons})")
        await _enqueue(service, manifest, choice)
    except OSError as exc:  # a full or failing disk: nothing is half kept
        service.spool.remove(manifest)
        raise UploadError(f"the service cannot store files right now ({exc.strerror}); "
                          "try again later", status=503) from None  # fmt: skip
    except BaseException:
        service.spool.remove(manifest)
        raise
    service.spool.save(manifest)
    return manifest


def _store(service: Service, upload: str, index: int, file: UploadFile) -> Entry:
    limits = service.settings.limits
    entry = Entry(index=index, name=_display_name(file.filename, index), size_bytes=file.size or 0)
    if entry.size_bytes > limits.max_file_bytes:
        entry.refused = (
            f"the file is {entry.size_bytes / 2**20:.1f} MB; at most "
            f"{limits.max_file_bytes // 2**20} MB each"
        )
        return entry
    file.file.seek(0)
    head = file.file.read(_HEAD_BYTES)
    file.file.seek(0)
    target = service.spool.inputs(upload) / f"{index}.upload"
    with target.open("wb") as out:
        shutil.copyfileobj(file.file, out, 1024 * 1024)
    try:
        sniffed = sniff(head, entry.name, target)
    except Refused as exc:
        target.unlink()
        entry.refused = str(exc)
        return entry
    target.rename(target.with_name(f"{index}{sniffed.suffix}"))
    entry.kind, entry.suffix = sniffed.kind, sniffed.suffix
    return entry


async def _enqueue(service: Service, manifest: Manifest, choice: Choice) -> None:
    app = service.app
    window = service.settings.night_window if choice.when == "tonight" else None
    convert = app.tasks["convert.document"].options(owner=manifest.owner, window=window)
    archive = app.tasks["convert.archive"].options(owner=manifest.owner)
    accepted = [e for e in manifest.files if e.kind]
    signatures = [convert.s(Document(upload=manifest.upload, index=e.index, name=e.name,
                                     kind=e.kind, target=choice.target))
                  for e in accepted]  # fmt: skip
    notify: list[Any] = [Email(to=choice.email)] if choice.email else []
    batch = await app.batch_async(signatures, on_complete=archive.s(upload=manifest.upload),
                                  notify=notify)  # fmt: skip
    manifest.batch = batch.id
    manifest.archive_job = batch.callback_id
    page = await app.admin.aio.jobs(batch=batch.id, limit=len(signatures))
    by_index = {json.loads(job.payload)[0][0]["index"]: job.id for job in page.jobs}
    for entry in accepted:
        entry.job = by_index.get(entry.index, "")
