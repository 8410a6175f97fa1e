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


class Mailbox:
    """The SMTP server the service mails to (aiosmtpd): when each message arrived."""

    def __init__(self) -> None:
        self.arrived: list[tuple[float, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrived.append((time.time(), ",".join(envelope.rcpt_tos)))
        return "250 OK"


def _start(tmp: Path, smtp_port: int, batch: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = dict(os.environ, CONVERT_DATA_DIR=str(tmp / "data"), PYTHONPATH=str(REPO),
               OFFLOAD_SMTP_HOST="127.0.0.1", OFFLOAD_SMTP_PORT=str(smtp_port),
               OFFLOAD_SMTP_SECURITY="none", CONVERT_BATCH=str(batch))  # fmt: skip
    env.pop("OFFLOAD_URL", None)
    service = subprocess.Popen(
        [sys.executable, "-m", "apps.convert", "--port", str(port), "--no-outbox",
         "--dashboard-port", "0"], cwd=tmp,
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/", timeout=2).raise_for_status()
            return service, url
        except httpx.HTTPError:
            if time.monotonic() > deadline or service.poll() is not None:
                raise SystemExit("the service did not start") from None
            time.sleep(0.3)


def one_person(url: str, tmp: Path, mailbox: Mailbox) -> None:
    """Ten typical documents, one of each kind: from the upload to the e-mail, and where
    the time goes (read from the jobs' own timestamps)."""
    from convert_samples import make_all
    from offload import Offload

    samples = make_all(tmp / "typical")
    with httpx.Client(base_url=url, timeout=120) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text)
        assert csrf
        began = time.time()
        answer = client.post(
            "/uploads", data={"csrf": csrf.group(1), "target": "pdf", "when": "now",
                              "email": "one@example.com"},
            files=[("files", (p.name, p.read_bytes())) for p in samples.values()],
            headers={"Accept": "application/json"},
        )  # fmt: skip
        answered = time.time()
        answer.raise_for_status()
        upload = answer.json()["upload"]
    while not any(to == "one@example.com" for _, to in mailbox.arrived):
        if time.time() - began > 300:
            raise SystemExit("no e-mail within 300 s")
        time.sleep(0.05)
    mailed = next(at for at, to in mailbox.arrived if to == "one@example.com")
    app = Offload(f"sqlite:///{tmp / 'data' / 'convert.db'}")
    manifest = json.loads((tmp / "data" / "uploads" / upload / "manifest.json").read_text())
    members = app.admin.jobs(batch=manifest["batch"], limit=50).jobs
    archive = app.admin.get(manifest["archive_job"])
    notice = app.admin.jobs(task="offload.notify", limit=1).jobs[0]
    first_start = min(j.started_at or 0 for j in members)
    last_end = max(j.finished_at or 0 for j in members)
    print(f"\n10 typical documents ({', '.join(samples)}), one person, upload to e-mail: "
          f"{mailed - began:.1f} s")  # fmt: skip
    print("| step | s |\n|---|---|")
    for step, seconds in [
        ("upload request (stored, answered)", answered - began),
        ("until the first conversion starts", first_start - answered),
        ("conversions (first start to last end)", last_end - first_start),
        ("until the archive job starts", (archive.started_at or 0) - last_end),
        ("archive (zip and attach)", (archive.finished_at or 0) - (archive.started_at or 0)),
        ("until the notice starts", (notice.started_at or 0) - (archive.finished_at or 0)),
        ("notice (compose and send)", (notice.finished_at or 0) - (notice.started_at or 0)),
        ("until the mail server has it", mailed - (notice.finished_at or 0)),
    ]:
        print(f"| {step} | {max(0.0, seconds):.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument(
        "--batch",
        type=int,
        default=8,
        help="CONVERT_BATCH: files per LibreOffice run (1: a run per file)",
    )
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.people, args.files = 3, 2
    from aiosmtpd.controller import Controller

    tmp = Path(tempfile.mkdtemp(prefix="convert-load-"))
    (tmp / "samples").mkdir()
    samples = [MAKERS[i % len(MAKERS)](tmp / "samples", f"doc-{i}{ext}")
               for i, ext in enumerate([".docx", ".xlsx", ".pptx", ".txt"] * 3)]  # fmt: skip
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    smtp.start()
    service, url = _start(tmp, smtp.port, args.batch)
    log(f"the service converts with CONVERT_BATCH={args.batch}")
    try:
        one_person(url, tmp, mailbox)
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
        smtp.stop()
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
