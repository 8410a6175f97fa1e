"""The conversion service as a newcomer runs it (``python -m apps.convert``), on free
ports in a temporary folder, with a real SMTP server (aiosmtpd) of the test's own that
receives its e-mails."""

from __future__ import annotations

import email
import email.policy
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

from web_helpers import free_port

ROOT = Path(__file__).resolve().parent.parent


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append(parsed)  # type: ignore[arg-type]
        return "250 OK"

    def wait_for(self, to: str, timeout_s: float = 120) -> EmailMessage:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in self.messages:
                if to in str(message["To"]):
                    return message
            time.sleep(0.1)
        raise AssertionError(f"no mail to {to} within {timeout_s}s")


def link_in(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    found = re.search(r"https?://\S+/d/\S+", str(body.get_content()))
    assert found, body.get_content()
    return found.group(0)


@dataclass
class Service:
    url: str
    data_dir: Path
    mailbox: Mailbox
    process: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    def client(self) -> httpx.Client:
        """A browser-like client: its own session, the form's CSRF token at hand."""
        return httpx.Client(base_url=self.url, timeout=60, follow_redirects=False)

    def upload(
        self, client: httpx.Client, files: list[tuple[str, bytes]], **form: str
    ) -> httpx.Response:
        page = client.get("/")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf, page.text[:500]
        data = {"csrf": csrf.group(1), "target": "pdf", "when": "now", **form}
        return client.post("/uploads", data=data, files=[("files", f) for f in files],
                           headers={"Accept": "application/json"})  # fmt: skip

    def wait_done(self, client: httpx.Client, upload: str, timeout_s: float = 180) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            status = client.get(f"/uploads/{upload}/status").json()
            if status["archive"]["state"] in ("succeeded", "dead"):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"upload {upload} not done: {status}")
            time.sleep(0.2)


def start_service(tmp: Path, **env: str) -> Iterator[Service]:
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    smtp_port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    port = free_port()
    log = tmp / "service.log"
    environment = dict(
        os.environ, CONVERT_DATA_DIR=str(tmp / "data"), OFFLOAD_SMTP_HOST="127.0.0.1",
        OFFLOAD_SMTP_PORT=str(smtp_port), OFFLOAD_SMTP_SECURITY="none", CONVERT_SLOTS="2",
        PYTHONPATH=str(ROOT), **env,
    )  # fmt: skip
    environment.pop("OFFLOAD_URL", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "apps.convert", "--port", str(port), "--no-outbox",
             "--dashboard-port", "0"],
            cwd=tmp, env=environment, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    service = Service(f"http://127.0.0.1:{port}", tmp / "data", mailbox, process, log, env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(service.url + "/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the service did not start: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield service
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            process.kill()
        controller.stop()
