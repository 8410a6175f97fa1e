"""What a file is, by its content: the pure rules of the conversion service's intake
and archive naming."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import pytest

from apps.convert.archive import _safe, _unique
from apps.convert.intake import IMAGE, MARKDOWN, OFFICE, TEXT, Refused, check_unpacked, sniff


def zipped(tmp_path: Path, members: dict[str, bytes]) -> Path:
    path = tmp_path / "file.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def kind_of(tmp_path: Path, data: bytes, name: str) -> tuple[str, str]:
    path = tmp_path / "upload"
    path.write_bytes(data)
    found = sniff(data[:8192], name, path)
    return found.kind, found.suffix


def test_content_not_name_decides(tmp_path: Path) -> None:
    assert kind_of(tmp_path, b"\x89PNG\r\n\x1a\n" + bytes(20), "report.pdf") == (IMAGE, ".png")
    assert kind_of(tmp_path, b"{\\rtf1 hello}", "notes.txt") == (OFFICE, ".rtf")
    assert kind_of(tmp_path, "# Titre é".encode(), "a.md") == (MARKDOWN, ".md")
    assert kind_of(tmp_path, b"plain words", "a.exe") == (TEXT, ".txt")
    assert kind_of(tmp_path, b"a,b\n1,2\n", "t.csv") == (OFFICE, ".csv")
    docx = zipped(tmp_path, {"[Content_Types].xml": b"<x/>", "word/document.xml": b"<w/>"})
    assert sniff(docx.read_bytes()[:8192], "x.odt", docx).suffix == ".docx"
    odt = zipped(tmp_path, {"mimetype": b"application/vnd.oasis.opendocument.text"})
    assert sniff(odt.read_bytes()[:8192], "x.docx", odt).suffix == ".odt"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x7fELF\x02\x01", "Linux program"),
        (b"MZ\x90\x00", "Windows program"),
        (b"%PDF-1.7", "already a PDF"),
        (bytes(range(256)) * 4, "not a document"),
        (b"PK\x03\x04garbage", "cannot be read"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "must be named .doc"),
    ],
)
def test_refused_with_a_reason(tmp_path: Path, data: bytes, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        kind_of(tmp_path, data, "report.docx")


def test_a_plain_zip_is_not_a_document(tmp_path: Path) -> None:
    plain = zipped(tmp_path, {"holiday.jpg": b"x"})
    with pytest.raises(Refused, match="not an Office or OpenDocument"):
        sniff(plain.read_bytes()[:8192], "a.docx", plain)


def test_bombs_are_found_by_inflating(tmp_path: Path) -> None:
    bomb = zipped(tmp_path, {"word/document.xml": bytes(50_000_000)})
    with pytest.raises(Refused, match="zip bomb"):
        check_unpacked(bomb, 300 * 2**20)
    noise = random.Random(7).randbytes(2_500_000)  # does not compress: no bomb's ratio
    big = zipped(tmp_path, {f"word/{n}.xml": noise for n in range(3)})
    with pytest.raises(Refused, match="more than 5 MB"):
        check_unpacked(big, 5 * 2**20)
    check_unpacked(big, 10 * 2**20)  # within bounds: no error


def test_archive_names_are_safe_and_unique() -> None:
    taken: set[str] = set()
    assert _unique("report.pdf", taken) == "report.pdf"
    assert _unique("Report.pdf", taken) == "Report (2).pdf"
    assert _safe("../../etc/passwd") == "_.._etc_passwd"
    assert _safe("a\x00b:c") == "a_b_c"
    assert _safe("...") == "file"


def test_text_with_a_cut_character_at_the_end_is_text(tmp_path: Path) -> None:
    data = ("é" * 5000).encode()[:8191]
    assert kind_of(tmp_path, io.BytesIO(data).getvalue(), "a.txt")[0] == TEXT
