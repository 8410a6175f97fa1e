"""Schemathesis over the HTTP API's own ``/openapi.json``, with an admin token, against a
real server and worker: thousands of generated requests, valid and not, and no server
error among their answers (nor an answer its schema does not document)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from web_helpers import Served, start, stop


def test_generated_requests_never_get_a_server_error(tmp_path: Path) -> None:
    served: Served = start(f"sqlite:///{tmp_path}/jobs.db", tmp_path)
    try:
        cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
        assert cli is not None, "schemathesis is in the dev extra"
        done = subprocess.run(
            [
                cli, "run", f"{served.url}/openapi.json",
                "--checks", "not_a_server_error,status_code_conformance",
                "--header", f"Authorization: Bearer {served.tokens[('alice', 'admin')]}",
                # the event streams are endless by design; their routes are tested by hand
                "--exclude-path-regex", "events$",
                "--max-examples", "25", "--seed", "20261203", "--request-timeout", "20",
                "--no-color",
            ],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    finally:
        stop(served)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "passed" in done.stdout
