"""What a page shows of an upload: each file's state and progress, the archive once it
is built, and when it all expires. One function, used by the pages and their live
updates alike, so both always agree."""

from __future__ import annotations

import time
from typing import Any

from apps.convert.spool import Manifest
from apps.convert.tasks import Service
from offload import JobNotFound, JobState

_SHOWN = {
    "queued": "waiting", "scheduled": "waiting", "running": "converting",
"succeeded": "converted", "dead": "failed",
    "cancelled": "cancelled",
}  # fmt: skip


def _when(manifest: Manifest, job: Any) -> str:
    if job.state == JobState.SCHEDULED and job.error is not None:
        return "trying again"
    if job.state == JobState.SCHEDULED and manifest.when == "tonight":
        return "waiting for tonight"
    return _SHOWN.get(job.state.value, str(job.state.value))


async def upload_status(service: Service, manifest: Manifest) -> dict[str, Any]:
    app = service.app
    jobs: dict[str, Any] = {}
    if manifest.batch:
        page = await app.admin.aio.jobs(batch=manifest.batch, owner=manifest.owner,
                                        limit=max(1, len(manifest.files)))  # fmt: skip
        jobs = {job.id: job for job in page.jobs}
    files = []
    for entry in manifest.files:
        job = jobs.get(entry.job)
        if entry.refused or job is None:
            files.append({"name": entry.name, "job": entry.job, "state": "refused" if entry.refused
                          else "gone", "shown": "not converted" if entry.refused else "removed",
                          "progress": 0.0, "message": entry.refused})  # fmt: skip
            continue
        message = "" if job.state == JobState.SUCCEEDED else job.progress_message or ""
        if job.error is not None and job.state in (JobState.DEAD, JobState.SCHEDULED):
            message = job.error.message
        files.append({"name": entry.name, "job": job.id, "state": job.state.value,
                      "shown": _when(manifest, job), "progress": job.progress,
                      "message": message})  # fmt: skip
    archive: dict[str, Any] = {"state": "waiting", "ready": False}
    archived_at = None
    if manifest.archive_job:
        try:
            job = await app.admin.aio.get(manifest.archive_job, owner=manifest.owner)
        except JobNotFound:
            job = None
        if job is not None:
            archived_at = job.finished_at
            archive["state"] = job.state.value
            archive["ready"] = job.state == JobState.SUCCEEDED
            if job.state == JobState.DEAD and job.error is not None:
                archive["error"] = job.error.message
    ended = sum(1 for f in files if f["state"] in ("succeeded", "dead", "cancelled", "refused"))
    return {
        "upload": manifest.upload,
        "created_at": manifest.created_at,
        "expires_at": service.expires_at(manifest, archived_at),
        "expired": time.time() > service.expires_at(manifest, archived_at),
        "target": manifest.target,
        "when": manifest.when,
        "email": manifest.email,
        "total": len(files),
        "ended": ended,
        "converted": sum(1 for f in files if f["state"] == "succeeded"),
        "files": files,
        "archive": archive,
    }
