"""The conversion sandbox, broken into on purpose: a program run in it cannot reach the
network or files outside its work folder, and its time and memory limits hold for the
whole process group. These run real programs in real bubblewrap."""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.convert.sandbox import ConversionTimedOut, Sandbox

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap missing")
PY = "/usr/bin/python3"


@pytest.fixture
def listener() -> Iterator[tuple[int, list[str]]]:
    """A local HTTP server that records every request it gets."""
    seen: list[str] = []

    class Record(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Record)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], seen
    server.shutdown()


def run(tmp_path: Path, code: str, timeout_s: float = 30, memory_mb: int = 512) -> str:
    (tmp_path / "job.py").write_text(code)
    finished = Sandbox().run(tmp_path, [PY, "/work/job.py"], timeout_s=timeout_s,
                             memory_bytes=memory_mb * 2**20)  # fmt: skip
    return finished.log


def test_no_network_and_no_other_files(tmp_path: Path, listener: tuple[int, list[str]]) -> None:
    port, seen = listener
    log = run(
        tmp_path,
        f"""
import os, socket, urllib.request
try:
    urllib.request.urlopen("http://127.0.0.1:{port}/from-sandbox", timeout=3)
    print("NETWORK REACHED")
except OSError as exc:
    print("network refused:", type(exc).__name__)
for path in ("/etc/passwd", "/root", "/home", "{Path.cwd()}", "/var"):
    print(path, "visible" if os.path.exists(path) else "absent")
open("/work/made.txt", "w").write("ok")
""",
    )
    assert "NETWORK REACHED" not in log and "network refused" in log
    assert seen == []
    for path in ("/etc/passwd", "/root", "/home", str(Path.cwd()), "/var"):
        assert f"{path} absent" in log
    assert (tmp_path / "made.txt").read_text() == "ok"  # its own folder is writable


def test_a_time_limit_kills_the_whole_group(tmp_path: Path) -> None:
    marker = tmp_path / "still-alive"
    with pytest.raises(ConversionTimedOut, match="longer than 2 s"):
        run(
            tmp_path,
            """
import subprocess, time
subprocess.Popen(["/bin/sh", "-c", "sleep 4; echo alive > /work/still-alive"])
time.sleep(60)
""",
            timeout_s=2,
        )
    import time

    time.sleep(3)  # the grandchild would have written by now had it survived
    assert not marker.exists()


def test_a_memory_limit_stops_a_greedy_program(tmp_path: Path) -> None:
    log = run(
        tmp_path,
        """
try:
    block = bytearray(800 * 1024 * 1024)
    print("GOT IT")
except MemoryError:
    print("refused")
""",
        memory_mb=300,
    )
    assert "GOT IT" not in log and "refused" in log
