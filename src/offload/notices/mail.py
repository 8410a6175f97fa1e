"""One e-mail notice: composed from templates an application may override, with a
signed link to the job's page, and sent with ``aiosmtplib`` from settings in the
environment:

- ``OFFLOAD_SMTP_HOST`` (required), ``OFFLOAD_SMTP_PORT`` (default by security),
- ``OFFLOAD_SMTP_SECURITY``: ``starttls`` (default, port 587), ``tls`` (465), ``none`` (25),
- ``OFFLOAD_SMTP_USER`` and ``OFFLOAD_SMTP_PASSWORD`` (a login when given),
- ``OFFLOAD_SMTP_FROM`` (default ``offload@<this host>``), ``OFFLOAD_SMTP_TIMEOUT_S`` (10),
- ``OFFLOAD_PUBLIC_URL``: where people reach ``offload serve`` (links start with it),
- ``OFFLOAD_LINK_TTL_S``: how long a link works (default a week),
- ``OFFLOAD_NOTICE_TEMPLATES``: a folder whose ``job_ended.txt`` / ``job_ended.html``
  replace the built-in ones.

The ``Message-ID`` is made from the notice's own id, so a message sent again after a
crash is recognisably the same message.
"""

from __future__ import annotations

import os
import socket
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

from offload.errors import Abort

_BUILT_IN = Path(__file__).resolve().parent / "templates"
_PORTS = {"starttls": 587, "tls": 465, "none": 25}


def check_address(address: str) -> str:
    """A deliverable-looking address, normalised (checked when the job is made)."""
    try:
        from email_validator import EmailNotValidError, validate_email
    except ImportError:  # pragma: no cover - the notify extra brings it
        from offload.errors import ConfigurationError

        raise ConfigurationError(
            "e-mail notices need the notify extra: pip install 'offload[notify]'"
        ) from None
    try:
        return str(validate_email(address, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        from offload.errors import ConfigurationError

        raise ConfigurationError(f"not an e-mail address: {address!r:.100} ({exc})") from None


def settings() -> dict[str, Any]:
    host = os.environ.get("OFFLOAD_SMTP_HOST", "")
    if not host:
        raise RuntimeError("OFFLOAD_SMTP_HOST is not set: the e-mail waits for it (retried)")
    security = os.environ.get("OFFLOAD_SMTP_SECURITY", "starttls").lower()
    if security not in _PORTS:
        raise Abort(f"OFFLOAD_SMTP_SECURITY is starttls, tls or none, not {security!r}")
    return {
        "hostname": host,
        "port": int(os.environ.get("OFFLOAD_SMTP_PORT") or _PORTS[security]),
        "use_tls": security == "tls",
        "start_tls": security == "starttls",
        "username": os.environ.get("OFFLOAD_SMTP_USER") or None,
        "password": os.environ.get("OFFLOAD_SMTP_PASSWORD") or None,
        "timeout": float(os.environ.get("OFFLOAD_SMTP_TIMEOUT_S") or 10),
    }


def sender() -> str:
    return os.environ.get("OFFLOAD_SMTP_FROM") or f"offload@{socket.getfqdn() or 'localhost'}"


def public_url() -> str:
    return (os.environ.get("OFFLOAD_PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/")


def _templates() -> Any:
    import jinja2

    folders = [str(_BUILT_IN)]
    custom = os.environ.get("OFFLOAD_NOTICE_TEMPLATES")
    if custom:
        folders.insert(0, custom)
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
    )


def compose(notice_id: str, to: str, job: dict[str, Any], files: list[str], link: str,
            link_expires_at: str) -> EmailMessage:  # fmt: skip
    env = _templates()
    error = job.get("error")
    context = {"job": job, "files": files, "link": link, "link_expires_at": link_expires_at,
               "error": f"{error['type']}: {error['message']}" if error else None}  # fmt: skip
    verb = {"succeeded": "is done", "dead": "failed", "cancelled": "was cancelled"}
    message = _headers(notice_id, to, f"Your {job['task']} job {verb.get(job['state'], 'ended')}")
    message.set_content(env.get_template("job_ended.txt").render(context))
    message.add_alternative(env.get_template("job_ended.html").render(context), subtype="html")
    return message


def compose_batch(notice_id: str, to: str, context: dict[str, Any]) -> EmailMessage:
    """A batch's one mail: how many succeeded, what went wrong, the link to its result."""
    import jinja2

    env = _templates()
    try:  # an application's own subject line, when its templates give one
        subject = env.get_template("batch_ended_subject.txt").render(context).strip()
    except jinja2.TemplateNotFound:
        subject = (
            f"Your {context['total']} jobs are done"
            if not context["failed"]
            else f"Your {context['total']} jobs have ended, {context['failed']} did not succeed"
        )
    message = _headers(notice_id, to, " ".join(subject.split())[:200])
    message.set_content(env.get_template("batch_ended.txt").render(context))
    message.add_alternative(env.get_template("batch_ended.html").render(context), subtype="html")
    return message


def _headers(notice_id: str, to: str, subject: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender()
    message["To"] = to
    message["Date"] = formatdate(localtime=False)
    domain = sender().rpartition("@")[2] or "localhost"
    message["Message-ID"] = f"<{notice_id}@{domain}>"  # the same on every retry
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    return message


async def send(message: EmailMessage) -> None:
    import aiosmtplib

    try:
        await aiosmtplib.send(message, **settings())
    except aiosmtplib.SMTPRecipientsRefused as exc:
        raise Abort(f"the mail server refused the address: {exc}") from None
