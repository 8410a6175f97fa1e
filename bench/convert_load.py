"""The conversion service under load: many people upload a batch at once, as a browser
does (form page, upload, a status poll a second, the archive), while one machine's
workers convert. What it shows is the one-minute rule: every request answers in well
under a minute, counted by offload's request-timing middleware in the service itself
(``offload requests``), however long the queue of conversions grows.

    .venv/bin/python bench/convert_load.py [--people 20] [--files 5] [--smoke]

Prints request percentiles by kind, upload-to-archive times, conversions per minute and
the middleware's count of requests over 60 s. No peer runs beside it: Gotenberg, the
closest one, ships only as a Docker image, and this machine runs no Docker engine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from benchlib import REPO, log, percentile

from convert_samples import make_docx, make_pptx, make_txt, make_xlsx

MAKERS = [make_docx, make_xlsx, make_pptx, make_txt]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Person(threading.Thread):
    """One browser: the form, one upload of ``files`` documents, a poll a second."""

    def __init__(self, url: str, files: list[Path], timings: dict[str, list[float]],
                 lock: threading.Lock) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.url, self.files, self.timings, self.lock = url, files, timings, lock
        self.upload_to_archive_s: float | None = None
        self.error: str | None = None

    def _timed(self, kind: str, call: Any) -> httpx.Response:
        start = time.perf_counter()
        response: httpx.Response = call()
        with self.lock:
            self.timings.setdefault(kind, []).append(time.perf_counter() - start)
        return response

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=120) as client:
                page = self._timed("form page", lambda: client.get("/"))
                csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
                assert csrf
                files = [("files", (p.name, p.read_bytes())) for p in self.files]
                started = time.perf_counter()
                answer = self._timed("upload", lambda: client.post(
                    "/uploads", data={"csrf": csrf.group(1), "target": "pdf", "when": "now"},
                    files=files, headers={"Accept": "application/json"}))  # fmt: skip
                answer.raise_for_status()
                upload = answer.json()["upload"]
                while True:
                    status = self._timed("status poll", lambda: client.get(
                        f"/uploads/{upload}/status")).json()  # fmt: skip
                    if status["archive"]["state"] in ("succeeded", "dead"):
                        break
                    time.sleep(1.0)
                self.upload_to_archive_s = time.perf_counter() - started
                zipped = self._timed("archive download", lambda: client.get(
                    f"/uploads/{upload}/converted.zip"))  # fmt: skip
                zipped.raise_for_status()
        except Exception as exc:  # reported, never hidden
            self.error = f"{type(exc).__name__}: {exc}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.people, args.files = 3, 2
    tmp = Path(tempfile.mkdtemp(prefix="convert-load-"))
    (tmp / "samples").mkdir()
    samples = [MAKERS[i % len(MAKERS)](tmp / "samples", f"doc-{i}{ext}")
               for i, ext in enumerate([".docx", ".xlsx", ".pptx", ".txt"] * 3)]  # fmt: skip
    port = _free_port()
    env = dict(os.environ, CONVERT_DATA_DIR=str(tmp / "data"), PYTHONPATH=str(REPO))
    env.pop("OFFLOAD_URL", None)
    service = subprocess.Popen(
        [sys.executable, "-m", "apps.convert", "--port", str(port), "--smtp-port",
         str(_free_port())], cwd=tmp, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or service.poll() is not None:
                    raise SystemExit("the service did not start") from None
                time.sleep(0.3)
        timings: dict[str, list[float]] = {}
        lock = threading.Lock()
        people = [Person(url, [samples[(p + f) % len(samples)] for f in range(args.files)],
                         timings, lock) for p in range(args.people)]  # fmt: skip
        log(f"{args.people} people upload {args.files} documents each, all at once")
        began = time.perf_counter()
        for person in people:
            person.start()
        for person in people:
            person.join()
        wall_s = time.perf_counter() - began
    finally:
        service.send_signal(signal.SIGINT)  # its last request counts are written on the way out
        service.wait(60)
    report(people, timings, wall_s, args, tmp)
    return 0 if all(p.error is None for p in people) else 1


def report(people: list[Person], timings: dict[str, list[float]], wall_s: float,
           args: argparse.Namespace, tmp: Path) -> None:  # fmt: skip
    errors = [p.error for p in people if p.error]
    print(f"\n{args.people} people x {args.files} documents = {args.people * args.files} "
          f"conversions in {wall_s:.1f} s: {args.people * args.files / wall_s * 60:.0f} "
          f"conversions/min; errors: {len(errors)} {errors[:3]}")  # fmt: skip
    print("\n| request | count | p50 ms | p95 ms | max ms |\n|---|---|---|---|---|")
    for kind, values in timings.items():
        ordered = sorted(v * 1000 for v in values)
        print(f"| {kind} | {len(ordered)} | {percentile(ordered, 50):.0f} | "
              f"{percentile(ordered, 95):.0f} | {ordered[-1]:.0f} |")  # fmt: skip
    waits = sorted(p.upload_to_archive_s for p in people if p.upload_to_archive_s is not None)
    if waits:
        print(
            f"\nupload to archive ready: p50 {percentile(waits, 50):.1f} s, p95 "
            f"{percentile(waits, 95):.1f} s, max {waits[-1]:.1f} s (work in the background)"
        )
    for row in _requests_report(tmp):
        slowest = row.get("slowest") or {}
        print(f"\nthe service's own count (offload requests): {row['requests']} requests, "
              f"{row['over_threshold']} over 60 s, p95 {row['p95_ms']:.0f} ms, slowest "
              f"{slowest.get('method')} {slowest.get('path')} {row['max_ms']:.0f} ms")  # fmt: skip


def _requests_report(tmp: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "offload", "requests", "apps.convert.tasks:build_app", "--json"],
        cwd=REPO, env=dict(os.environ, CONVERT_DATA_DIR=str(tmp / "data")), capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"offload requests failed: {done.stderr.strip()[-300:]}")
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


if __name__ == "__main__":
    sys.exit(main())
