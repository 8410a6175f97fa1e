"""Take the README's dashboard screenshots from the real pages: a server and two workers
on a fresh SQLite store, a few minutes of mixed work (some of it failing), then Chromium
logs in and photographs the overview, a jobs search and a job, light and dark.

    .venv/bin/python docs/screenshots.py [--minutes 3]

Needs Debian's chromium and the dev extra (playwright). Writes docs/images/*.png.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP = """
import random, time
from offload import Offload, current_job
app = Offload(default_retries=1)

@app.task(queue="documents")
def convert(name: str, pages: int) -> dict:
    job = current_job()
    for page in range(pages):
        time.sleep(random.uniform(0.05, 0.2))
        job.set_progress((page + 1) / pages, f"page {page + 1} of {pages}")
    if name.endswith(".xlsb"):
        raise ValueError(f"{name}: this spreadsheet format is not supported")
    return {"pdf": name.rsplit(".", 1)[0] + ".pdf", "pages": pages}

@app.task(queue="mail")
def send_receipt(order: str, to: str) -> None:
    time.sleep(random.uniform(0.01, 0.05))
    if random.random() < 0.04:
        raise ConnectionError("smtp.example.com: 451 try again later")

@app.task(queue="reports")
def monthly_report(customer: str, month: str) -> str:
    time.sleep(random.uniform(0.5, 2.0))
    return f"{customer}-{month}.pdf"

@app.periodic("0 2 * * *")
def nightly_cleanup() -> None:
    pass
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=3.0)
    minutes = parser.parse_args().minutes
    folder = Path(tempfile.mkdtemp(prefix="offload-shots-"))
    (folder / "shots_app.py").write_text(APP)
    env = dict(os.environ, OFFLOAD_URL=f"sqlite:///{folder}/jobs.db", PYTHONPATH=str(folder))
    offload = [sys.executable, "-m", "offload"]
    password = "screenshots-only-password"
    subprocess.run(
        [
            *offload,
            "user",
            "create",
            "ada",
            "--owner",
            "ops",
            "--role",
            "admin",
            "--password-stdin",
        ],
        input=password + "\n",
        text=True,
        env=env,
        check=True,
    )
    port = free_port()
    procs = [
        subprocess.Popen(
            [*offload, "serve", "shots_app:app", "--port", str(port)],
            env=env,
            cwd=folder,
            stderr=subprocess.DEVNULL,
        )
    ]
    for _ in range(2):
        procs.append(
            subprocess.Popen(
                [*offload, "worker", "shots_app:app", "-c", "4", "-q", "documents,mail,reports"],
                env=env,
                cwd=folder,
                stderr=subprocess.DEVNULL,
            )
        )
    sys.path.insert(0, str(folder))
    os.environ.update(env)
    from shots_app import app  # type: ignore[import-not-found]

    rng = random.Random(7)
    customers = ["acme", "globex", "initech", "umbrella", "hooli"]
    kinds = ["docx", "xlsx", "pptx", "odt", "xlsb", "md"]
    try:
        deadline = time.monotonic() + minutes * 60
        while time.monotonic() < deadline:
            who = rng.choice(customers)
            for _ in range(rng.randint(3, 12)):
                name = f"{who}-invoice-{rng.randint(1000, 9999)}.{rng.choice(kinds)}"
                app.tasks["convert"].options(owner=who).enqueue(name, rng.randint(2, 8))
            app.tasks["send_receipt"].options(owner=who).enqueue(
                f"order-{rng.randint(10000, 99999)}", f"billing@{who}.example"
            )
            if rng.random() < 0.2:
                app.tasks["monthly_report"].options(owner=who).enqueue(who, "2026-11")
            time.sleep(rng.uniform(0.5, 2.0))
        for _ in range(20):  # some work still running when the pictures are taken
            app.tasks["convert"].options(owner="acme").enqueue("acme-archive-scan.pdf", 40)
        time.sleep(8)  # the workers' per-minute counts reach the store
        shoot(f"http://127.0.0.1:{port}", password, app)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
        app.close()


def shoot(url: str, password: str, app: object) -> None:
    from playwright.sync_api import sync_playwright

    out = HERE / "images"
    out.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url + "/login")
        page.get_by_label("User name").fill("ada")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(url + "/")
        dead = page.goto(url + "/jobs?text=invoice&state=dead&task=convert")
        assert dead is not None
        first = page.locator("#jobs-live tbody a").first.get_attribute("href")
        for name, path in (
            ("overview", "/"),
            ("jobs", "/jobs?text=invoice&task=convert"),
            ("job", str(first)),
        ):
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                page.goto(url + path)
                page.wait_for_timeout(1500)  # charts drawn, the live feed settled
                page.screenshot(path=str(out / f"dashboard-{name}-{scheme}.png"))
        browser.close()


if __name__ == "__main__":
    main()
