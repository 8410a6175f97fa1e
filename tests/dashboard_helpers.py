"""A real ``offload serve`` with its dashboard and a real worker, users of every role, and
a logged-in HTTP client: what the dashboard tests share."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from dashboard_app import build_app
from offload import Offload
from web_helpers import env_for, free_port, offload_command

T = TypeVar("T")
PASSWORD = "correct horse battery"
#: name -> (owner, role)
USERS = {
    "ada": ("ops", "admin"),
    "otto": ("ops", "operator"),
    "sam": ("alice", "submitter"),
    "vic": ("alice", "viewer"),
    "bea": ("bob", "submitter"),
}


@dataclass
class Board:
    url: str
    store_url: str
    allow_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()

    def app(self) -> Offload:
        """The app as the worker runs it, on the board's store (its tasks registered)."""
        return build_app(self.store_url)

    def run(self, action: Callable[[Offload], T]) -> T:
        """``action(app)`` in a thread of its own: Playwright's sync API keeps an event
        loop running in the test's thread, where the blocking client cannot run its own."""

        def whole() -> T:
            app = self.app()
            try:
                return action(app)
            finally:
                app.close()

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(whole).result()

    def login(self, name: str, password: str = PASSWORD) -> httpx.Client:
        """A client with ``name``'s session and the CSRF token of its pages (``.csrf``)."""
        client = httpx.Client(base_url=self.url, timeout=30)
        page = client.get("/login")
        answer = client.post("/login", data={"name": name, "password": password, "next": "/",
                                             "csrf": csrf_of(page.text)})  # fmt: skip
        assert answer.status_code == 303, answer.text[:500]
        client.headers["X-CSRF-Token"] = csrf_of(client.get("/jobs").text)
        return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


def start_board(
    store_url: str, folder: Path, *extra: str, workers: bool = True,
    users: Mapping[str, tuple[str, str]] = USERS,
) -> Iterator[Board]:  # fmt: skip
    """A server (with ``extra`` options) and, with ``workers``, a worker, for ``users``."""
    port = free_port()
    allow_dir = folder / "allow"
    allow_dir.mkdir(parents=True, exist_ok=True)
    board = Board(url=f"http://127.0.0.1:{port}", store_url=store_url, allow_dir=allow_dir)
    app = Offload(store_url)
    try:
        for name, (owner, role) in users.items():
            app.admin.create_user(name=name, owner=owner, role=role, password=PASSWORD)
    finally:
        app.close()
    env = {**env_for(store_url), "DASHBOARD_ALLOW_DIR": str(allow_dir)}
    serve = offload_command("serve", "dashboard_app:app", "--port", str(port), *extra)
    commands = [("serve", serve)]
    if workers:
        commands.append(("worker", offload_command("worker", "dashboard_app:app", "-q",
                                                   "default,slow", "-c", "4")))  # fmt: skip
    for name, argv in commands:
        log = (folder / f"{name}.log").open("wb")
        board.processes.append(
            subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{board.url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if board.processes[0].poll() is not None or time.monotonic() > deadline:
            board.stop()
            raise RuntimeError((folder / "serve.log").read_text()[-3000:])
        time.sleep(0.1)
    try:
        yield board
    finally:
        board.stop()
