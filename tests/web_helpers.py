"""A real ``offload serve`` and a real ``offload worker`` on one store, for the HTTP API
tests, with a token per role and owner, and a server-sent events reader."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from offload import Offload

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """The server's base URL, and tokens: ``tokens[(owner, role)]``."""

    url: str
    store_url: str
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def client(self, owner: str | None = "alice", role: str = "submitter") -> httpx.Client:
        headers = {}
        if owner is not None:
            headers["Authorization"] = f"Bearer {self.tokens[(owner, role)]}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def wait_for(self, client: httpx.Client, job_id: str, *, timeout_s: float = 30) -> Any:
        """Poll the job until it ends, as a client would; its last representation."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            if job["state"] in ("succeeded", "dead", "cancelled"):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['state']} after {timeout_s}s")
            time.sleep(0.05)


def env_for(store_url: str) -> dict[str, str]:
    return dict(
        os.environ,
        OFFLOAD_URL=store_url,
        PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    )


def offload_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "offload", *args]


def start(store_url: str, log_dir: Path, *extra: str, **more_env: str) -> Served:
    port = free_port()
    env = {**env_for(store_url), "OFFLOAD_PUBLIC_URL": f"http://127.0.0.1:{port}", **more_env}
    served = Served(url=f"http://127.0.0.1:{port}", store_url=store_url)
    app = Offload(store_url)
    try:
        for owner in ("alice", "bob"):
            for role in ("admin", "operator", "submitter", "viewer"):
                made = app.admin.create_token(owner=owner, role=role)
                served.tokens[(owner, role)] = made.token
    finally:
        app.close()
    log_dir.mkdir(parents=True, exist_ok=True)
    for name, argv in (
        ("serve", offload_command("serve", "web_app:app", "--port", str(port), *extra)),
        ("worker", offload_command("worker", "web_app:app", "-c", "20", "--log-level", "warning")),
    ):
        log = (log_dir / f"{name}.log").open("wb")
        served.processes.append(
            subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=log_dir)
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{served.url}/healthz", timeout=1).status_code == 200:
                return served
        except httpx.TransportError:
            pass
        if served.processes[0].poll() is not None or time.monotonic() > deadline:
            stop(served)
            raise RuntimeError((log_dir / "serve.log").read_text()[-3000:])
        time.sleep(0.1)


def stop(served: Served) -> None:
    for process in served.processes:
        process.terminate()
    for process in served.processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The events of a text/event-stream response, parsed ({"id", "event", "data"})."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in event:
                event["data"] = json.loads(event["data"])
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            event[name] = value[1:] if value.startswith(" ") else value


@pytest.fixture(scope="module", params=["sqlite", "postgres", "redis"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A server and a worker on a fresh store of each kind, for one test module."""
    folder = tmp_path_factory.mktemp(f"web-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{folder}/jobs.db"
    elif request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        url = f"{server.url(server.create_database())}"
    else:
        url = request.getfixturevalue("redis_server").url(prefix=f"w{uuid.uuid4().hex[:8]}")
    running = start(url, folder)
    try:
        yield running
    finally:
        stop(running)


def start_job(client: httpx.Client, body: dict[str, Any], **headers: str) -> httpx.Response:
    return client.post("/api/v1/jobs", json=body, headers=headers)
