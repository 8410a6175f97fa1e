"""E-mail notices, received by a real SMTP server (``aiosmtpd``) from a real worker, their
signed link followed through a real ``offload serve`` (then tampered with, expired)."""

from __future__ import annotations

import email
import email.policy
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from offload import Offload
from offload.errors import ConfigurationError
from offload.links import sign
from offload.notices import Email
from web_helpers import Served, free_port, start, stop


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        self.messages.append(
            email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        )
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    box = Inbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def served_with_mail(tmp_path: Path, inbox: tuple[Inbox, int]) -> Iterator[Served]:
    running = start(
        f"sqlite:///{tmp_path}/jobs.db", tmp_path, OFFLOAD_SMTP_HOST="127.0.0.1",
        OFFLOAD_SMTP_PORT=str(inbox[1]), OFFLOAD_SMTP_SECURITY="none",
        OFFLOAD_SMTP_FROM="jobs@example.org",
    )  # fmt: skip
    yield running
    stop(running)


def _notices_done(client: httpx.Client, count: int) -> bool:
    """Every notice job ended well: a notice that failed after its send would send again."""
    found = client.get("/api/v1/jobs", params={"task": "offload.notify"}).json()["jobs"]
    return len(found) == count and all(n["state"] == "succeeded" for n in found)


def _wait(predicate: Any, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_an_email_with_a_signed_link_that_the_api_checks(
    served_with_mail: Served, inbox: tuple[Inbox, int]
) -> None:
    box, _ = inbox
    with served_with_mail.client("alice") as alice:
        body = {"task": "make_report", "args": ["Q4", 2],
                "notify": [{"email": "Ann@Example.com"}]}  # fmt: skip
        job_id = alice.post("/api/v1/jobs", json=body).json()["id"]
        _wait(lambda: _notices_done(alice, 1), "the notice done")
        time.sleep(1.0)  # a repeat would be on its way by now
        notices = alice.get("/api/v1/jobs", params={"task": "offload.notify"}).json()["jobs"]
    (message,) = box.messages
    assert box.envelopes[0].rcpt_tos == ["Ann@example.com"]
    assert message["Subject"] == "Your make_report job is done"
    assert message["From"] == "jobs@example.org" and message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] and message["Message-ID"] == f"<{notices[0]['id']}@example.org>"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    (link,) = re.findall(r"http://\S+/api/v1/shared/\S+", text)
    assert f'href="{link}"' in html and "report.txt" in text
    page = httpx.get(link).json()
    assert page["id"] == job_id and page["state"] == "succeeded"
    files = {f["name"]: f["url"] for f in page["files"]}
    got = httpx.get(f"{served_with_mail.url}{files['report.txt']}")
    assert got.status_code == 200 and got.content == b"Q4\n" * 2
    assert httpx.get(link[:-3] + "xyz").status_code == 404  # tampered
    app = Offload(served_with_mail.store_url)
    try:
        secret = app.admin.link_secret()
    finally:
        app.close()
    old, _ = sign(secret, job_id, "alice", None, expires_at=int(time.time()) - 1)
    expired = httpx.get(f"{served_with_mail.url}/api/v1/shared/{old}")
    assert expired.status_code == 410 and "expired" in expired.json()["detail"]


def test_a_failed_job_mail_says_what_went_wrong(
    served_with_mail: Served, inbox: tuple[Inbox, int]
) -> None:
    box, _ = inbox
    with served_with_mail.client("bob") as bob:
        body = {"task": "fail", "args": ["the printer is on fire"],
                "notify": [{"email": "bob@example.com", "on": "failure"}]}  # fmt: skip
        bob.post("/api/v1/jobs", json=body)
        done = {"task": "wait_s", "args": [0], "notify": [{"email": "bob@example.com",
                                                           "on": "failure"}]}  # fmt: skip
        bob.post("/api/v1/jobs", json=done)
        _wait(lambda: _notices_done(bob, 1), "the notice done")
        time.sleep(1.0)
    (message,) = box.messages  # the job that succeeded sent nothing
    assert message["Subject"] == "Your fail job failed"
    assert "RuntimeError: the printer is on fire" in message.get_body(("plain",)).get_content()


def test_addresses_are_checked_when_the_job_is_made() -> None:
    for bad in ("", "ann", "ann@", "@example.com", "ann@example..com", "a b@example.com"):
        with pytest.raises(ConfigurationError):
            Email(to=bad)
    assert Email(to="ann@example.com", on="success").to_builtins() == {
        "email": "ann@example.com", "on": "success"}  # fmt: skip


def test_a_batch_sends_one_mail_with_a_link_to_its_result(
    served_with_mail: Served, inbox: tuple[Inbox, int]
) -> None:
    box, _ = inbox
    with served_with_mail.client("alice") as alice:
        body = {
            "jobs": [{"task": "wait_s", "args": [0.05]}, {"task": "fail", "args": ["jammed"]},
                     {"task": "make_report", "args": ["Q1", 1]}],
            "notify": [{"email": "ann@example.com"}],
        }  # fmt: skip
        answer = alice.post("/api/v1/batches", json=body)
        assert answer.status_code == 202, answer.text
        _wait(lambda: _notices_done(alice, 1), "the batch's notice done")
        time.sleep(1.0)
        nobody = {"jobs": [{"task": "wait_s", "args": [0]}], "notify": [{"email": "nobody"}]}
        bad = alice.post("/api/v1/batches", json=nobody)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:2] == ["body", "notify"]
    (message,) = box.messages  # one for the batch, not one per member
    assert message["Subject"] == "Your 3 jobs have ended, 1 did not succeed"
    text = message.get_body(("plain",)).get_content()
    assert "RuntimeError: jammed" in text and "2 succeeded" in text
    (link,) = re.findall(r"http://\S+/api/v1/shared/\S+", text)
    page = httpx.get(link).json()
    assert page["task"] == "offload.batch_done" and page["state"] == "succeeded"
    assert page["result"] == {"succeeded": 2, "dead": 1}


def test_the_development_outbox_shows_the_mail_with_working_links(tmp_path: Path) -> None:
    smtp_port = free_port()
    running = start(
        f"sqlite:///{tmp_path}/jobs.db", tmp_path, "--dev-smtp", "--dev-smtp-port",
        str(smtp_port), OFFLOAD_SMTP_HOST="127.0.0.1", OFFLOAD_SMTP_PORT=str(smtp_port),
        OFFLOAD_SMTP_SECURITY="none",
    )  # fmt: skip
    try:
        with running.client("alice") as alice:
            body = {"task": "wait_s", "args": [0], "notify": [{"email": "ann@example.com"}]}
            alice.post("/api/v1/jobs", json=body)
            deadline = time.monotonic() + 60
            while "Your wait_s job is done" not in (page := httpx.get(
                    f"{running.url}/dev/outbox")).text:  # fmt: skip
                assert time.monotonic() < deadline, page.text
                time.sleep(0.1)
        assert "default-src 'none'" in page.headers["content-security-policy"]
        (link,) = re.findall(r'href="(http://[^"]+/api/v1/shared/[^"]+)"', page.text)
        assert httpx.get(link.replace("&amp;", "&")).json()["state"] == "succeeded"
    finally:
        stop(running)
    log = (tmp_path / "serve.log").read_text()
    assert "development outbox at" in log
