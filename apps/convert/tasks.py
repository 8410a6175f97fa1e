"""The service's jobs: one conversion per file (queue ``convert``), one archive per upload
once all its files have ended (the batch's callback), and a sweep of expired uploads.
Workers run ``offload worker apps.convert.tasks:build_app``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from apps.convert.archive import write_archive
from apps.convert.converters import ConversionFailed, convert_one
from apps.convert.intake import Refused
from apps.convert.sandbox import ConversionTimedOut, Sandbox, SandboxUnavailable
from apps.convert.settings import Settings, from_env
from apps.convert.spool import Spool
from offload import Abort, Offload, current_job

MAIL_TEMPLATES = Path(__file__).resolve().parent / "mail"
QUEUE = "convert"


class Service:
    """Everything one process of the service shares: its settings, spool, sandbox and
    the slots that keep it from running more conversions than the machine has cores."""

    def __init__(self, settings: Settings, app: Offload) -> None:
        self.settings = settings
        self.app = app
        self.spool = Spool(settings.data_dir)
        self.sandbox = Sandbox(settings.sandbox)
        self.slots = threading.BoundedSemaphore(settings.limits.slots)

    def convert(self, upload: str, index: int, name: str, kind: str, target: str) -> dict[str, Any]:
        job = current_job()
        source = self.spool.inputs(upload) / f"{index}{Path(name).suffix.lower() or '.bin'}"
        matches = sorted(self.spool.inputs(upload).glob(f"{index}.*"))
        if matches:
            source = matches[0]
        if not source.is_file():
            raise Abort("the uploaded file is gone (the upload expired or was removed)")
        job.set_progress(0.1, "waiting for a converter")
        with self.slots:
            job.set_progress(0.3, "converting")
            work = Path(tempfile.mkdtemp(prefix="convert-", dir=self.settings.data_dir / "work"))
            try:
                made = convert_one(self.sandbox, work, source, kind, target, self.settings.limits)
                out = self.spool.outputs(upload) / f"{index}.{target}"
                shutil.move(made, out)
            except (Refused, ConversionFailed, ConversionTimedOut) as exc:
                raise Abort(str(exc)) from None  # the same file would fail the same way
            except SandboxUnavailable as exc:
                raise RuntimeError(str(exc)) from None  # retried: an operator can fix it
            finally:
                shutil.rmtree(work, ignore_errors=True)
        job.set_progress(1.0, "converted")
        return {"output": f"{Path(name).stem}.{target}", "size_bytes": out.stat().st_size}

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

    def sweep(self) -> dict[str, int]:
        """Uploads older than ``keep_s`` go, with their jobs and so their archives."""
        horizon = time.time() - self.settings.limits.keep_s
        removed = 0
        for upload in self.spool.all_uploads():
            manifest = self.spool.load(upload)
            if manifest is None or manifest.created_at > horizon:
                continue
            for job_id in [*(e.job for e in manifest.files if e.job), manifest.archive_job]:
                if not job_id:
                    continue
                with contextlib.suppress(LookupError):
                    self.app.admin.delete(job_id)
                self.app.files.delete(job_id)
            self.spool.remove(manifest)
            removed += 1
        return {"removed": removed}


def build_service(settings: Settings | None = None) -> Service:
    settings = settings or from_env()
    (settings.data_dir / "work").mkdir(parents=True, exist_ok=True)
    # The batch's e-mail links to this service's own download page, and lives as long
    # as the archive does; the worker that sends it reads these.
    os.environ.setdefault("OFFLOAD_NOTICE_TEMPLATES", str(MAIL_TEMPLATES))
    os.environ.setdefault("OFFLOAD_LINK_TTL_S", str(settings.limits.keep_s))
    # A fair queue: people take turns, so one person's twenty files never hold back the
    # next person's one.
    app = Offload(os.environ.get("OFFLOAD_URL") or f"sqlite:///{settings.data_dir}/convert.db",
                  fair_queues=[QUEUE])  # fmt: skip
    service = Service(settings, app)
    timeout_s = settings.limits.convert_timeout_s * 3 + 30
    app.task(name="convert.document", queue=QUEUE, retries=2, timeout_s=timeout_s)(service.convert)
    app.task(name="convert.archive", retries=3, timeout_s=600)(service.archive)
    app.periodic("*/10 * * * *", name="convert.sweep", retries=1)(service.sweep)
    return service


def build_app() -> Offload:
    """For ``offload worker apps.convert.tasks:build_app``."""
    return build_service().app
