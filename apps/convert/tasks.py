"""The service's jobs: one conversion per file (queue ``convert``), one archive per upload
once all its files have ended (the batch's callback), and a sweep of expired uploads.
Workers run ``offload worker apps.convert.tasks:build_app``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from apps.convert.archive import write_archive
from apps.convert.converters import ConversionFailed, convert_many
from apps.convert.intake import Refused
from apps.convert.sandbox import ConversionTimedOut, Sandbox, SandboxUnavailable
from apps.convert.settings import Settings, from_env
from apps.convert.spool import Manifest, Spool
from offload import Abort, Offload, current_job

MAIL_TEMPLATES = Path(__file__).resolve().parent / "mail"
#: The longest an upload may wait to start (tonight's window opens within a day).
WAIT_S = 24 * 3600
log = logging.getLogger("apps.convert")
QUEUE = "convert"


class Document(msgspec.Struct, frozen=True):
    """One uploaded file to convert: the item of a ``convert.document`` job."""

    upload: str
    index: int
    name: str
    kind: str
    target: str


class Service:
    """Everything one process of the service shares: its settings, spool, sandbox and
    the slots that keep it from running more conversions than the machine has cores."""

    def __init__(self, settings: Settings, app: Offload) -> None:
        self.settings = settings
        self.app = app
        self.spool = Spool(settings.data_dir)
        self.sandbox = Sandbox(settings.sandbox)
        self.slots = threading.BoundedSemaphore(settings.limits.slots)

    def convert(self, documents: list[Document]) -> list[dict[str, Any] | Exception]:
        """A micro-batch of documents: one LibreOffice run per upload among them (never
        two people's files in one sandbox), the runs side by side up to the slots. Each
        document gets its own outcome; one that fails fails alone."""
        groups: dict[str, list[int]] = {}
        for position, document in enumerate(documents):
            groups.setdefault(document.upload, []).append(position)
        results: list[dict[str, Any] | Exception] = [Abort("not converted")] * len(documents)

        def run(positions: list[int]) -> None:
            with self.slots:
                outcomes = self._convert_group([documents[p] for p in positions])
            for position, outcome in zip(positions, outcomes, strict=True):
                results[position] = outcome

        with ThreadPoolExecutor(min(len(groups), self.settings.limits.slots)) as pool:
            list(pool.map(run, groups.values()))
        return results

    def _convert_group(self, documents: list[Document]) -> list[dict[str, Any] | Exception]:
        outcomes: list[dict[str, Any] | Exception] = []
        sources: list[tuple[Path, str]] = []
        present: list[Document] = []
        for document in documents:
            found = sorted(self.spool.inputs(document.upload).glob(f"{document.index}.*"))
            if found:
                sources.append((found[0], document.kind))
                present.append(document)
        work = Path(tempfile.mkdtemp(prefix="convert-", dir=self.settings.data_dir / "work"))
        try:
            made = convert_many(self.sandbox, work, sources, documents[0].target,
                                self.settings.limits) if sources else []  # fmt: skip
            by_document = dict(zip([d.index for d in present], made, strict=True))
            for document in documents:
                outcomes.append(self._keep(document, by_document.get(document.index)))
        except SandboxUnavailable as exc:  # retried: an operator can fix the machine
            return [RuntimeError(str(exc))] * len(documents)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return outcomes

    def _keep(
        self, document: Document, made: Path | Exception | None
    ) -> dict[str, Any] | Exception:
        if made is None:
            return Abort("the uploaded file is gone (the upload expired or was removed)")
        if isinstance(made, Refused | ConversionFailed | ConversionTimedOut):
            return Abort(str(made))  # the same file would fail the same way again
        if isinstance(made, Exception):
            return made
        out = self.spool.outputs(document.upload) / f"{document.index}.{document.target}"
        shutil.move(made, out)
        return {"output": f"{Path(document.name).stem}.{document.target}",
                "size_bytes": out.stat().st_size}  # fmt: skip

    def archive(self, outcomes: list[dict[str, Any]], upload: str) -> dict[str, Any]:
        manifest = self.spool.load(upload)
        if manifest is None:
            raise Abort("the upload is gone (it expired or was removed)")
        states = {o["id"]: o for o in outcomes}
        work = Path(tempfile.mkdtemp(prefix="archive-", dir=self.settings.data_dir / "work"))
        try:
            zip_path, summary = write_archive(manifest, states, self.spool.outputs(upload), work)
            current_job().attach(zip_path, name="converted.zip")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self.spool.drop_work(upload)  # the archive holds the results now
        return summary

    def expires_at(self, manifest: Manifest, archived_at: float | None) -> float:
        """When an upload goes: ``keep_s`` after its archive was made (its e-mailed link
        lives as long), or, while it waits (tonight's window), a day later than that."""
        keep_s = self.settings.limits.keep_s
        return (archived_at + keep_s) if archived_at else manifest.created_at + keep_s + WAIT_S

    def sweep(self) -> dict[str, int]:
        """Expired uploads go, with their jobs and so their archives; one that cannot be
        read or removed never stops the others."""
        now, removed, failed = time.time(), 0, 0
        for upload in self.spool.all_uploads():
            try:
                manifest = self.spool.load(upload)
                if manifest is None:
                    removed += self.spool.remove_unreadable(upload, now - WAIT_S)
                    continue
                archived_at = None
                with contextlib.suppress(LookupError):
                    archived_at = self.app.admin.get(manifest.archive_job).finished_at
                if self.expires_at(manifest, archived_at) > now:
                    continue
                for job_id in [*(e.job for e in manifest.files if e.job), manifest.archive_job]:
                    with contextlib.suppress(LookupError):
                        self.app.admin.delete(job_id)
                    self.app.files.delete(job_id)
                self.spool.remove(manifest)
                removed += 1
            except Exception:
                log.exception("could not sweep upload %s", upload)
                failed += 1
        return {"removed": removed, "failed": failed}


def build_service(settings: Settings | None = None) -> Service:
    settings = settings or from_env()
    (settings.data_dir / "work").mkdir(parents=True, exist_ok=True)
    # The batch's e-mail links to this service's own download page, and lives as long
    # as the archive does; the worker that sends it reads these.
    os.environ.setdefault("OFFLOAD_NOTICE_TEMPLATES", str(MAIL_TEMPLATES))
    os.environ.setdefault("OFFLOAD_LINK_TTL_S", str(settings.limits.keep_s))
    # First come, first served by default: a micro-batch then holds one or two uploads'
    # files, so a LibreOffice run converts several (a fair queue, CONVERT_FAIR=1, takes
    # people in turn and leaves one file per run: 104 against 137 conversions a minute).
    app = Offload(os.environ.get("OFFLOAD_URL") or f"sqlite:///{settings.data_dir}/convert.db",
                  fair_queues=[QUEUE] if settings.fair else [],
                  lease_s=settings.limits.lease_s)  # fmt: skip
    service = Service(settings, app)
    limits = settings.limits
    # A micro-batch's worst case: its shared run times out, then each file alone does.
    timeout_s = limits.convert_timeout_s * (limits.batch_size + 2) + 60
    app.task(name="convert.document", queue=QUEUE, retries=2, timeout_s=timeout_s,
             batch_size=limits.batch_size, batch_wait_s=0.2)(service.convert)  # fmt: skip
    app.task(name="convert.archive", retries=3, timeout_s=600)(service.archive)
    app.periodic("*/10 * * * *", name="convert.sweep", retries=1)(service.sweep)
    return service


def build_app() -> Offload:
    """For ``offload worker apps.convert.tasks:build_app``."""
    return build_service().app
