"""The conversion service end to end, as a person uses it: a real Chromium uploads one
document of every kind, watches the progress arrive without reloading, the e-mail lands
in a real SMTP server, its link opens the archive in another browser (no session), and
every PDF in the zip opens and holds its source's text."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser_helpers import ARTIFACTS, chromium
from convert_samples import make_all, marker
from convert_service import Service, link_in, start_service

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/bin/chromium") or not os.path.exists("/usr/bin/soffice"),
    reason="needs Debian's chromium and LibreOffice (./run test installs them)",
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from start_service(tmp_path_factory.mktemp("convert-browser"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


def watch(page: Any) -> list[str]:
    """Console errors, page errors and CSP violations, as they happen."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def test_upload_watch_mail_and_download(service: Service, browser: Any, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    samples = make_all(tmp_path / "samples")
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    problems = watch(page)
    page.goto(service.url + "/")
    page.screenshot(path=ARTIFACTS / "convert-upload.png", full_page=True)
    page.set_input_files("#files", [str(p) for p in samples.values()])
    assert page.locator("#chosen li").count() == len(samples)  # the chosen files are listed
    page.fill("#email", "ann@example.com")
    page.click("#send")
    page.wait_for_url("**/uploads/*")
    first_view = page.content()
    page.evaluate("window.__not_reloaded = true")
    assert "Download the archive" not in first_view  # the work is done in the background
    link = page.locator('a:has-text("Download the archive")')
    link.wait_for(timeout=180_000)  # arrives by server-sent events
    assert page.evaluate("window.__not_reloaded") is True
    rows = page.locator("tbody tr")
    assert rows.count() == len(samples)
    assert page.locator("tbody tr.state-succeeded").count() == len(samples)
    page.screenshot(path=ARTIFACTS / "convert-done.png", full_page=True)
    page.goto(service.url + "/uploads")
    assert page.locator("li.upload").count() == 1
    assert problems == []
    context.close()

    mail = service.mailbox.wait_for("ann@example.com")
    assert "ready" in str(mail["Subject"])
    assert mail.get_body(("html",)) is not None
    url = link_in(mail)

    stranger = browser.new_context(accept_downloads=True)  # the mail opened elsewhere
    shared = stranger.new_page()
    problems = watch(shared)
    shared.goto(url)
    with shared.expect_download() as download:
        shared.click('a:has-text("Download the archive")')
    archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
    assert problems == []
    stranger.close()

    names = archive.namelist()
    assert "REPORT.txt" in names
    from pypdf import PdfReader

    for kind, source in samples.items():
        inner = f"{source.stem}.pdf"
        assert inner in names, (inner, names)
        pdf = PdfReader(io.BytesIO(archive.read(inner)))
        assert len(pdf.pages) >= 1
        if kind not in ("png", "jpeg"):
            text = " ".join(page.extract_text() or "" for page in pdf.pages)
            assert marker(kind) in text.replace("\n", " "), (kind, text[:300])
