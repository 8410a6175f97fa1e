"""Webhook notices: stored with the job's end, delivered signed (verified here with
``standardwebhooks``, as a receiver would), retried with one ``webhook-id``, stopped by
a 410, and never sent where they may not go (an SSRF corpus)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from offload import JobState, Offload
from offload.errors import ConfigurationError
from offload.notices import Webhook
from offload.notices.addresses import Refused, allow_list, checked_address, permitted
from worker_helpers import WorkerThread, wait_until

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="


class Receiver:
    """A real HTTP server on 127.0.0.1: records each request, answers from a script."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        #: While set and not yet set free, the first request waits on it.
        self.hold: threading.Event | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body.decode()}
                )
                if receiver.hold is not None and len(receiver.requests) == 1:
                    receiver.hold.wait(60)
                status, headers = receiver.script.pop(0) if receiver.script else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv("OFFLOAD_WEBHOOK_ALLOW", "127.0.0.1/32")  # tests' own receiver only
    monkeypatch.setenv("OFFLOAD_WEBHOOK_SECRET", SECRET)
    running = Receiver()
    yield running
    running.close()


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Offload]:
    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path}/jobs.db"}.get(
        request.param
    ) or request.getfixturevalue(f"{request.param}_url")
    application = Offload(url, default_retries=0)
    yield application
    application.close()


def _tasks(app: Offload) -> tuple[Any, Any]:
    @app.task
    def convert(name: str) -> str:
        return name.upper()

    @app.task
    def broken() -> None:
        raise ValueError("no paper")

    return convert, broken


def _notices(app: Offload) -> list[Any]:
    return app.admin.jobs(task="offload.notify", limit=100).jobs


def test_a_webhook_is_signed_and_verified_by_its_receiver(app: Offload, receiver: Receiver) -> None:
    convert, _ = _tasks(app)
    job = convert.options(notify=[Webhook(url=f"{receiver.url}/hooks")]).enqueue("a.docx")
    with WorkerThread(app):
        wait_until(lambda: receiver.requests, what="the webhook")
        wait_until(lambda: _notices(app)[0].state is JobState.SUCCEEDED, what="notice done")
    (request,) = receiver.requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    event = Verifier(SECRET).verify(request["body"], headers)
    assert event["type"] == "job.succeeded" and event["data"]["id"] == job.id
    assert event["data"]["result"] == "A.DOCX" and "args" not in event["data"]
    (notice,) = _notices(app)
    assert headers["webhook-id"] == notice.id and request["path"] == "/hooks"
    assert notice.meta == {} and notice.owner == job.record.owner


def test_a_failing_receiver_gets_the_same_webhook_id_until_it_answers(
    app: Offload, receiver: Receiver
) -> None:
    convert, broken = _tasks(app)
    receiver.script = [(503, {"Retry-After": "0"}), (503, {"Retry-After": "0"}), (204, {})]
    broken.options(notify=[Webhook(url=receiver.url, on="failure")]).enqueue()
    convert.options(notify=[Webhook(url=receiver.url, on="failure")]).enqueue("ok")  # no notice
    with WorkerThread(app):
        wait_until(lambda: len(receiver.requests) >= 3, what="three tries")
        wait_until(lambda: _notices(app)[0].state is JobState.SUCCEEDED, what="notice done")
    ids = {r["headers"]["webhook-id"] for r in receiver.requests}
    assert len(receiver.requests) == 3 and len(ids) == 1
    assert json.loads(receiver.requests[0]["body"])["type"] == "job.dead"
    assert len(_notices(app)) == 1, "the job that succeeded asked only about failures"


def test_410_stops_and_a_redirect_is_not_followed(app: Offload, receiver: Receiver) -> None:
    convert, _ = _tasks(app)
    receiver.script = [(410, {}), (302, {"Location": f"{receiver.url}/elsewhere"})]
    convert.options(notify=[Webhook(url=f"{receiver.url}/gone")]).enqueue("a")
    with WorkerThread(app):
        wait_until(lambda: _notices(app) and _notices(app)[0].state is JobState.DEAD,
                   what="dead notice")  # fmt: skip
    (notice,) = _notices(app)
    assert "410" in notice.error.message and len(receiver.requests) == 1
    convert.options(notify=[Webhook(url=f"{receiver.url}/moved")]).enqueue("b")
    with WorkerThread(app):
        wait_until(lambda: len(receiver.requests) == 2, what="the redirect")
        wait_until(lambda: any(n.attempts for n in _notices(app) if n.state is JobState.SCHEDULED),
                   what="a retry scheduled")  # fmt: skip
    moved = next(n for n in _notices(app) if n.state is JobState.SCHEDULED)
    assert "302" in moved.attempts[-1].error.message
    assert [r["path"] for r in receiver.requests] == ["/gone", "/moved"]  # never /elsewhere


def test_a_notice_is_checked_when_the_job_is_made(app: Offload) -> None:
    convert, _ = _tasks(app)
    for bad in ("ftp://x/", "http://", "https://user:pw@example.com/", "x" * 3000):
        with pytest.raises(ConfigurationError):
            Webhook(url=bad)
    with pytest.raises(ConfigurationError, match="on="):
        Webhook(url="https://example.com/", on="sometimes")
    with pytest.raises(ConfigurationError, match="list"):
        convert.options(notify=Webhook(url="https://example.com/"))  # type: ignore[arg-type]


# -- where a notice may go ----------------------------------------------------------

REFUSED = [
    "127.0.0.1", "127.1.2.3", "0.0.0.0", "10.0.0.1", "172.16.5.4", "192.168.1.1",
    "169.254.169.254", "100.64.0.1", "224.0.0.1", "255.255.255.255", "::1", "::",
    "fe80::1", "fc00::1", "fd00:ec2::254", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "2002:7f00:1::", "ff02::1", "64:ff9b::a00:1", "192.0.0.192", "::a9fe:a9fe",
    "64:ff9b:1::a9fe:a9fe", "fec0::1", "198.18.0.1",
]  # fmt: skip


@pytest.mark.parametrize("address", REFUSED)
def test_private_local_and_unroutable_addresses_are_refused(address: str) -> None:
    assert not permitted(ipaddress.ip_address(address))


def test_global_addresses_and_the_allow_list_pass() -> None:
    assert permitted(ipaddress.ip_address("93.184.216.34"))
    assert permitted(ipaddress.ip_address("2606:2800:220:1:248:1893:25c8:1946"))
    nets = allow_list("127.0.0.0/8, 10.1.0.0/16")
    assert permitted(ipaddress.ip_address("127.0.0.1"), nets)
    assert permitted(ipaddress.ip_address("::ffff:127.0.0.1"), nets)
    assert not permitted(ipaddress.ip_address("10.2.0.1"), nets)


@pytest.mark.parametrize(
    "host", ["localhost", "2130706433", "0177.0.0.1", "0x7f.1", "127.1", "[::1]", "::1"]
)
def test_names_and_number_forms_are_refused_after_resolution(host: str) -> None:
    with pytest.raises(Refused, match="may not reach"):
        asyncio.run(checked_address(host.strip("[]"), 80))


def test_a_worker_killed_mid_send_leaves_the_notice_to_be_sent_again(
    tmp_path: Path, receiver: Receiver
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import notice_app

    url = f"sqlite:///{tmp_path}/jobs.db"
    env = dict(os.environ, OFFLOAD_URL=url, PYTHONPATH=str(Path(__file__).parent))
    hold = threading.Event()
    receiver.hold = hold  # the first request hangs until the worker is dead
    notice_app.app.use_url(url)
    try:
        job = notice_app.convert.options(notify=[Webhook(url=f"{receiver.url}/slow")]).enqueue("x")
        argv = [sys.executable, "-m", "offload", "worker", "notice_app:app", "--log-level",
                "warning"]  # fmt: skip
        first = subprocess.Popen(argv, env=env)
        wait_until(lambda: receiver.requests, timeout_s=60, what="the first send")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        hold.set()  # the receiver answers the dead worker's request: nobody reads it
        second = subprocess.Popen(argv, env=env)
        try:
            wait_until(lambda: len(receiver.requests) >= 2, timeout_s=60, what="a second send")
            wait_until(
                lambda: notice_app.app.admin.jobs(task="offload.notify").jobs[0].state
                is JobState.SUCCEEDED, timeout_s=60, what="the notice done")  # fmt: skip
        finally:
            second.terminate()
            second.wait(30)
        time.sleep(0.5)
    finally:
        notice_app.app.close()
    ids = [r["headers"]["webhook-id"] for r in receiver.requests]
    assert len(ids) == 2 and len(set(ids)) == 1, "sent again, as the same notice"
    assert json.loads(receiver.requests[1]["body"])["data"]["id"] == job.id


def test_a_batch_sends_one_notice_when_all_have_ended(app: Offload, receiver: Receiver) -> None:
    convert, broken = _tasks(app)
    batch = app.batch([convert.s("a"), convert.s("b"), broken.s()],
                      notify=[Webhook(url=f"{receiver.url}/batch")])  # fmt: skip
    quiet = app.batch([convert.s("c"), broken.s()],
                      notify=[Webhook(url=f"{receiver.url}/quiet", on="success")])  # fmt: skip
    with WorkerThread(app):
        wait_until(lambda: receiver.requests, what="the batch's notice")
        wait_until(lambda: len(_notices(app)) == 2
                   and all(n.state is JobState.SUCCEEDED for n in _notices(app)),
                   what="both notices done")  # fmt: skip
    (request,) = receiver.requests  # one for the batch, none for the one that had a failure
    event = Verifier(SECRET).verify(
        request["body"], {k.lower(): v for k, v in request["headers"].items()}
    )
    assert event["type"] == "batch.ended" and event["data"]["id"] == batch.id
    assert event["data"]["counts"] == {"succeeded": 2, "dead": 1}
    assert [f["task"] for f in event["data"]["failed"]] == ["broken"]
    results = [json.loads(n.result) for n in _notices(app)]
    (skipped,) = [r for r in results if "skipped" in r]
    assert skipped["skipped"] == "on=success: 1 of 2 succeeded" and quiet.status().finished


def test_a_secret_result_is_not_told(app: Offload, receiver: Receiver) -> None:
    @app.task(secret_result=True)
    def sign_in(user: str) -> str:
        return f"session-{user}"

    sign_in.options(notify=[Webhook(url=receiver.url)]).enqueue("ann")
    with WorkerThread(app):
        wait_until(lambda: receiver.requests, what="the webhook")
    (request,) = receiver.requests
    assert json.loads(request["body"])["data"]["result"] == "[redacted]"
    assert "session-ann" not in request["body"]


def test_an_endpoints_secret_covers_its_own_host_only() -> None:
    from offload.notices.task import _covers

    assert _covers("https://hooks.example.com", "https://hooks.example.com/a/b")
    assert _covers("https://hooks.example.com/a", "https://hooks.example.com/a/b")
    assert not _covers("https://hooks.example.com", "https://hooks.example.com.evil.net/")
    assert not _covers("https://hooks.example.com", "http://hooks.example.com/")
    assert not _covers("https://hooks.example.com", "https://hooks.example.com:8443/")
    assert _covers("https://hooks.example.com", "https://hooks.example.com:443/x")
    assert not _covers("https://hooks.example.com/a", "https://hooks.example.com/b")


def test_an_endpoints_own_secrets_sign_in_place_of_the_apps(
    app: Offload, receiver: Receiver
) -> None:
    convert, _ = _tasks(app)
    app.webhook_secrets[receiver.url] = [OLD_SECRET, SECRET]  # rotating: both sign
    convert.options(notify=[Webhook(url=f"{receiver.url}/x")]).enqueue("a")
    with WorkerThread(app):
        wait_until(lambda: receiver.requests, what="the webhook")
    (request,) = receiver.requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (OLD_SECRET, SECRET):
        Verifier(secret).verify(request["body"], headers)
