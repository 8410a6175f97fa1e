"""Bad input to the conversion service, over HTTP as a browser sends it: each gets a
clear answer, nothing else is lost, and a bad file fails only itself."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from convert_samples import make_docx, make_png, make_txt
from convert_service import Service, link_in, start_service

pytestmark = pytest.mark.skipif(not Path("/usr/bin/soffice").exists(), reason="no LibreOffice")


def _night() -> str:
    """A window that is surely not open now, so a "tonight" upload must wait."""
    start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    return f"{start:%H}:00-{(start + dt.timedelta(hours=1)):%H}:00"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from start_service(
        tmp_path_factory.mktemp("convert-inputs"), CONVERT_MAX_FILES="12",
        CONVERT_MAX_FILE_MB="1", CONVERT_MAX_TOTAL_MB="3", CONVERT_TIMEOUT_S="15",
        CONVERT_NIGHT=_night(), CONVERT_LEASE_S="4",
    )  # fmt: skip


def kept_uploads(service: Service) -> list[Path]:
    folder = service.data_dir / "uploads"
    return sorted(folder.iterdir()) if folder.exists() else []


def read(path: Path) -> tuple[str, bytes]:
    return path.name, path.read_bytes()


def test_whole_uploads_refused_with_what_to_change(service: Service, tmp_path: Path) -> None:
    with service.client() as client:
        txt = read(make_txt(tmp_path))
        answer = service.upload(client, [txt] * 13)
        assert answer.status_code == 400
        assert "at most 12 files in one go: you sent 13" in answer.json()["detail"]
        answer = service.upload(client, [("big.txt", b"a" * 900_000)] * 4)
        assert answer.status_code == 413 and "at most 3 MB" in answer.json()["detail"]
        answer = service.upload(client, [txt], email="not-an-address")
        assert (
            answer.status_code == 400 and "e-mail address is not valid" in answer.json()["detail"]
        )
        answer = service.upload(client, [txt], target="exe")
        assert answer.status_code == 400 and "PDF or PNG" in answer.json()["detail"]
        answer = service.upload(client, [])
        assert answer.status_code == 400 and "at least one file" in answer.json()["detail"]
        answer = service.upload(client, [("x.docx", b"\x7fELF\x02\x01\x01")])
        assert answer.status_code == 400 and "a Linux program" in answer.json()["detail"]
        # a form from elsewhere (no token of this session) is refused: CSRF
        forged = client.post("/uploads", data={"csrf": "0" * 64}, files=[("files", txt)])
        assert forged.status_code == 403 and "reload the page" in forged.text
        # a browser gets the form back with the message, not JSON
        page = client.get("/")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        shown = client.post("/uploads", data={"csrf": csrf.group(1), "email": "nope"},
                            files=[("files", txt)])  # fmt: skip
        assert shown.status_code == 400 and 'role="alert"' in shown.text
        assert "e-mail address is not valid" in shown.text
    assert kept_uploads(service) == []  # nothing kept of them


def test_bad_files_fail_alone_and_the_rest_arrive(service: Service, tmp_path: Path) -> None:
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", b"\0" * 400_000_000)
    files = [
        read(make_docx(tmp_path)),
        ("picture.pdf", make_png(tmp_path).read_bytes()),  # named wrongly: content decides
        ("program.docx", b"\x7fELF\x02\x01\x01\x00" + bytes(64)),
        ("bomb.docx", bomb.getvalue()),
        ("large.txt", b"x" * 1_200_000),
    ]
    with service.client() as client:
        answer = service.upload(client, files, email="bob@example.com")
        assert answer.status_code == 202, answer.text
        upload = answer.json()["upload"]
        status = service.wait_done(client, upload)
        states = {f["name"]: (f["state"], f["message"]) for f in status["files"]}
        assert states["docx-sample.docx"][0] == "succeeded"
        assert states["picture.pdf"][0] == "succeeded"
        assert states["program.docx"] == ("refused", states["program.docx"][1])
        assert "Linux program" in states["program.docx"][1]
        assert states["bomb.docx"][0] == "dead" and "zip bomb" in states["bomb.docx"][1]
        assert states["large.txt"][0] == "refused" and "at most 1 MB" in states["large.txt"][1]
        assert status["archive"]["ready"]
        zipped = client.get(f"/uploads/{upload}/converted.zip")
        assert zipped.status_code == 200
        names = zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
        assert sorted(names) == ["REPORT.txt", "docx-sample.pdf", "picture.pdf"]
        report = zipfile.ZipFile(io.BytesIO(zipped.content)).read("REPORT.txt").decode()
        assert "bomb.docx: not converted" in report and "zip bomb" in report
    mail = service.mailbox.wait_for("bob@example.com")
    assert str(mail["Subject"]) == "2 of your 3 files are converted (1 could not be)"


def test_owners_links_and_expiry(service: Service, tmp_path: Path) -> None:
    with service.client() as ann, service.client() as eve:
        upload = service.upload(ann, [read(make_txt(tmp_path))], email="carol@example.com")
        upload_id = upload.json()["upload"]
        service.wait_done(ann, upload_id)
        eve.get("/")  # a session of her own
        for path in (f"/uploads/{upload_id}", f"/uploads/{upload_id}/status",
                     f"/uploads/{upload_id}/converted.zip", "/uploads/..%2f..%2fetc"):  # fmt: skip
            assert eve.get(path).status_code == 404, path
        assert upload_id not in eve.get("/uploads").text
        link = link_in(service.mailbox.wait_for("carol@example.com"))
        assert httpx.get(link + "/converted.zip").status_code == 200  # no session needed
        tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
        assert httpx.get(tampered).status_code == 404
        assert httpx.get(tampered, headers={"Accept": "text/html"}).text.count("not valid") == 1


def test_tonight_waits_for_the_window(service: Service, tmp_path: Path) -> None:
    with service.client() as client:
        answer = service.upload(client, [read(make_txt(tmp_path))], when="tonight")
        status = client.get(f"/uploads/{answer.json()['upload']}/status").json()
        assert [f["shown"] for f in status["files"]] == ["waiting for tonight"]


def test_hostile_documents_reach_nothing_and_fail_alone(service: Service, tmp_path: Path) -> None:
    """External links must not fetch (a local server records every request), host files
    must not be embedded, a document that hangs LibreOffice is killed at the time limit,
    a pixel bomb is refused, and the ordinary file beside them all arrives."""
    import http.server
    import threading

    from pypdf import PdfReader

    from convert_samples import (
        include_text_docx,
        include_text_rtf,
        linked_image_docx,
        linked_image_odt,
        linked_object_odt,
        pixel_bomb_png,
        slow_ods,
    )  # fmt: skip

    seen: list[str] = []

    class Record(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(404)
            self.end_headers()

        do_HEAD = do_OPTIONS = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Record)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    remote = f"http://127.0.0.1:{server.server_address[1]}/tracker.png"
    (tmp_path / "secret").mkdir()
    secret_picture = make_png(tmp_path / "secret")  # outside the job: must never be read
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    paths = [
        make_docx(hostile, "ordinary.docx"),
        linked_image_docx(hostile, remote, "web-image.docx"),
        linked_image_docx(hostile, f"file://{secret_picture}", "local-image.docx"),
        linked_image_odt(hostile, remote, "web-image.odt"),
        linked_object_odt(hostile, remote, "web-object.odt"),
        include_text_rtf(hostile),
        include_text_docx(hostile),
        slow_ods(hostile),
        pixel_bomb_png(hostile),
    ]
    try:
        with service.client() as client:
            answer = service.upload(client, [read(p) for p in paths])
            assert answer.status_code == 202, answer.text
            upload = answer.json()["upload"]
            status = service.wait_done(client, upload, timeout_s=240)
            states = {f["name"]: (f["state"], f["message"]) for f in status["files"]}
            zipped = zipfile.ZipFile(io.BytesIO(
                client.get(f"/uploads/{upload}/converted.zip").content))  # fmt: skip
        # and the worker is still there for the next person
        with service.client() as client:
            again = service.upload(client, [read(make_txt(tmp_path))])
            assert service.wait_done(client, again.json()["upload"])["converted"] == 1
    finally:
        server.shutdown()
    assert seen == [], f"the converter fetched {seen}"
    assert states["ordinary.docx"][0] == "succeeded"
    assert states["slow.ods"][0] == "dead" and "longer than" in states["slow.ods"][1]
    assert states["huge.png"][0] == "dead" and "too large" in states["huge.png"][1]
    for name in ("web-image.docx", "local-image.docx", "web-image.odt", "web-object.odt",
                 "include-rtf.rtf", "include-docx.docx"):  # fmt: skip
        assert states[name][0] == "succeeded", (name, states[name])
        pdf = PdfReader(io.BytesIO(zipped.read(f"{Path(name).stem}.pdf")))
        text = " ".join(page.extract_text() or "" for page in pdf.pages)
        assert "root:" not in text
        assert all(not page.images for page in pdf.pages), f"{name} embedded a picture"


def test_a_chunked_body_is_cut_off_at_the_limit(service: Service) -> None:
    """No Content-Length to check: the body is counted as it arrives and refused at 3 MB."""
    before = kept_uploads(service)
    with service.client() as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text)
        assert csrf

        def body() -> Iterator[bytes]:
            yield (b'--b\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n'
                   + csrf.group(1).encode() + b"\r\n--b\r\nContent-Disposition: form-data; "
                   b'name="files"; filename="big.txt"\r\n\r\n')  # fmt: skip
            for _ in range(40):
                yield b"a" * 256 * 1024
            yield b"\r\n--b--\r\n"

        answer = client.post(
            "/uploads",
            content=body(),
            headers={
                "Content-Type": "multipart/form-data; boundary=b",
                "Accept": "application/json",
            },
        )
        assert answer.status_code == 413 and "at most 3 MB" in answer.json()["detail"]
    assert kept_uploads(service) == before


def test_a_killed_worker_loses_nothing_and_mails_once(service: Service, tmp_path: Path) -> None:
    """SIGKILL the worker mid-conversion: the service starts another, the leases bring the
    jobs back, every file arrives and exactly one e-mail is sent."""
    import os
    import signal
    import subprocess
    import time

    from convert_samples import make_all

    with service.client() as client:
        samples = make_all(tmp_path / "samples")
        answer = service.upload(client, [read(p) for p in samples.values()],
                                email="dora@example.com")  # fmt: skip
        upload = answer.json()["upload"]
        deadline = time.monotonic() + 60
        while not any(f["state"] == "running" for f in
                      client.get(f"/uploads/{upload}/status").json()["files"]):  # fmt: skip
            assert time.monotonic() < deadline, "no conversion started"
            time.sleep(0.02)
        pgrep = ["pgrep", "-P", str(service.process.pid), "-f", "offload worker"]
        workers = subprocess.run(pgrep, check=False, capture_output=True, text=True).stdout.split()
        assert workers
        for pid in workers:
            os.kill(int(pid), signal.SIGKILL)
        status = service.wait_done(client, upload, timeout_s=240)
    assert status["converted"] == len(samples), status
    service.mailbox.wait_for("dora@example.com")
    time.sleep(2)  # a second mail would come now if the notice ran twice
    assert sum("dora@example.com" in str(m["To"]) for m in service.mailbox.messages) == 1
    assert "a worker stopped" in service.log.read_text()
