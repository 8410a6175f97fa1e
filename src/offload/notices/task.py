"""The internal task that delivers notices (never startable over HTTP), registered on
every app, and its retry schedule."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from offload.context import current_job
from offload.errors import Abort
from offload.present import iso
from offload.states import JobState

if TYPE_CHECKING:
    from offload.app import Offload

NOTIFY_TASK = "offload.notify"
SECRET_ENV = "OFFLOAD_WEBHOOK_SECRET"
#: Standard Webhooks' schedule after the first try: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
SCHEDULE_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


@dataclass(frozen=True)
class ScheduleBackoff:
    """Delays from a schedule, each spread by ``jitter`` (a fraction) either way."""

    schedule_s: tuple[float, ...] = SCHEDULE_S
    jitter: float = 0.1
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay_s(self, attempt: int) -> float:
        base = self.schedule_s[min(max(attempt - 1, 0), len(self.schedule_s) - 1)]
        return base * self.rng.uniform(1 - self.jitter, 1 + self.jitter)


def secrets_for(app: Offload, url: str) -> list[str]:
    """The endpoint's own secrets (the longest URL prefix that matches), else the app's
    (``$OFFLOAD_WEBHOOK_SECRET``, comma-separated: the new one first while rotating)."""
    configured: Mapping[str, Sequence[str]] = app.webhook_secrets
    matches = [prefix for prefix in configured if _covers(prefix, url)]
    if matches:
        return list(configured[max(matches, key=len)])
    return [s.strip() for s in os.environ.get(SECRET_ENV, "").split(",") if s.strip()]


def _covers(prefix: str, url: str) -> bool:
    """Whether ``url`` is under ``prefix``: the same scheme, host and port, then a path
    that starts with the prefix's (``https://a.com`` does not cover ``https://a.com.evil``)."""
    want, got = urlsplit(prefix), urlsplit(url)
    default = {"http": 80, "https": 443}
    try:
        ends = [(u.scheme, u.hostname, u.port or default.get(u.scheme)) for u in (want, got)]
    except ValueError:
        return False
    return ends[0] == ends[1] and got.path.startswith(want.path)


def event_of(job: Any, task: Any = None) -> dict[str, Any]:
    """What a receiver is told: the job's end, never its arguments (nor a secret result)."""
    from offload.present import job_dict

    result = job_dict(job, task=task)["result"]
    error = None if job.error is None else {"type": job.error.type, "message": job.error.message}
    return {
        "type": f"job.{job.state.value}",
        "timestamp": iso(job.finished_at),
        "data": {
            "id": job.id, "task": job.task, "queue": job.queue, "state": job.state.value,
            "owner": job.owner, "batch": job.batch, "attempts": job.attempt,
            "created_at": iso(job.created_at), "finished_at": iso(job.finished_at),
            "result": result, "error": error,
        },
    }  # fmt: skip


async def _mail(app: Offload, job: Any, to: str, msg_id: str) -> dict[str, Any]:
    from offload.links import LINK_TTL_S, sign
    from offload.notices.mail import compose, public_url, send
    from offload.present import job_dict

    ttl_s = float(os.environ.get("OFFLOAD_LINK_TTL_S") or LINK_TTL_S)
    token, expires_at = sign(await app.admin.aio.link_secret(), job.id, job.owner, None, ttl_s)
    files = [f.name for f in await app.admin.aio.files(job.id)]
    shown = job_dict(job, with_traceback=False, task=app.tasks.get(job.task))
    message = compose(msg_id, to, shown, files, f"{public_url()}/api/v1/shared/{token}",
                      iso(expires_at) or "")  # fmt: skip
    await send(message)
    return {"email": to, "message_id": str(message["Message-ID"])}


async def _batch_notice(
    app: Offload, callback: Any, batch_id: str, notice: dict[str, Any], msg_id: str
) -> dict[str, Any]:
    """One notice for a whole batch, sent after its callback (``callback``) has ended."""
    from offload.notices.addresses import allow_list
    from offload.notices.webhook import deliver

    status = await app.admin.aio.batch(batch_id)
    succeeded = status.counts.get(JobState.SUCCEEDED.value, 0)
    failed = status.total - succeeded
    on = notice.get("on", "end")
    if (on == "success" and failed) or (on == "failure" and not failed):
        return {"skipped": f"on={on}: {succeeded} of {status.total} succeeded"}
    page = await app.admin.aio.jobs(batch=batch_id, state=["dead", "cancelled"], limit=20)
    problems = [{"id": j.id, "task": j.task,
                 "error": "cancelled" if j.error is None else f"{j.error.type}: {j.error.message}"}
                for j in page.jobs]  # fmt: skip
    url, to = notice.get("webhook"), notice.get("email")
    if isinstance(url, str):
        event = {
            "type": "batch.ended", "timestamp": iso(callback.finished_at),
            "data": {"id": batch_id, "total": status.total, "counts": status.counts,
                     "failed": problems,
                     "result": event_of(callback, app.tasks.get(callback.task))["data"]},
        }  # fmt: skip
        sent = await deliver(url, event, msg_id, secrets_for(app, url), allow_list())
        return {"webhook": url, "status": sent, "webhook_id": msg_id}
    if not isinstance(to, str):
        raise Abort(f"not a notice this version can send: {notice!r:.200}")
    from offload.links import LINK_TTL_S, sign
    from offload.notices.mail import compose_batch, public_url, send

    ttl_s = float(os.environ.get("OFFLOAD_LINK_TTL_S") or LINK_TTL_S)
    token, expires_at = sign(await app.admin.aio.link_secret(), callback.id, callback.owner,
                             None, ttl_s)  # fmt: skip
    files = [f.name for f in await app.admin.aio.files(callback.id)]
    context = {"total": status.total, "succeeded": succeeded, "failed": failed,
               "problems": problems, "files": files,
               "link": f"{public_url()}/api/v1/shared/{token}", "token": token,
               "public_url": public_url(), "batch_id": batch_id,
               "link_expires_at": iso(expires_at) or ""}  # fmt: skip
    message = compose_batch(msg_id, to, context)
    await send(message)
    return {"email": to, "message_id": str(message["Message-ID"])}


def register(app: Offload) -> None:
    async def notify(job_id: str, notice: dict[str, Any]) -> dict[str, Any]:
        """Deliver one notice of the job ``job_id``'s end."""
        from offload.notices.addresses import allow_list
        from offload.notices.webhook import deliver

        job = await app.admin.aio.get(job_id)
        if job.state not in (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED):
            raise Abort(f"job {job_id} has not ended ({job.state.value}): nothing to tell")
        msg_id = current_job().id
        url, to = notice.get("webhook"), notice.get("email")
        batch_id = notice.get("batch")
        if isinstance(batch_id, str):
            return await _batch_notice(app, job, batch_id, notice, msg_id)
        if isinstance(url, str):
            event = event_of(job, app.tasks.get(job.task))
            status = await deliver(url, event, msg_id, secrets_for(app, url), allow_list())
            return {"webhook": url, "status": status, "webhook_id": msg_id}
        if isinstance(to, str):
            return await _mail(app, job, to, msg_id)
        raise Abort(f"not a notice this version can send: {notice!r:.200}")

    # a webhook's URL often holds its credential (Slack's path, a ?token=): shown nowhere
    app.task(name=NOTIFY_TASK, retries=len(SCHEDULE_S), backoff=ScheduleBackoff(),
             timeout_s=60.0, secret=("notice",), secret_result=True)(notify)  # fmt: skip
