"""What a file is, told by its content, never its name: a renamed program, a picture
called ``.pdf`` or a zip bomb dressed as a ``.docx`` is found here, with a reason a
person can act on. The cheap checks run when the file is uploaded; the one that reads
a whole archive (``check_unpacked``) runs in the worker, where it fails only its job.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

#: Kinds by how they are converted.
OFFICE, IMAGE, TEXT, MARKDOWN = "office", "image", "text", "markdown"

_OOXML = {"word/": ".docx", "xl/": ".xlsx", "ppt/": ".pptx"}
_ODF = {
    "application/vnd.oasis.opendocument.text": ".odt",
    "application/vnd.oasis.opendocument.spreadsheet": ".ods",
    "application/vnd.oasis.opendocument.presentation": ".odp",
    "application/vnd.oasis.opendocument.graphics": ".odg",
}
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_LEGACY = {".doc", ".xls", ".ppt"}
_IMAGES = {
    b"\x89PNG\r\n\x1a\n": ".png", b"\xff\xd8\xff": ".jpg", b"GIF87a": ".gif",
    b"GIF89a": ".gif", b"BM": ".bmp", b"II*\x00": ".tif", b"MM\x00*": ".tif",
}  # fmt: skip
_KNOWN_BINARIES = {
    b"\x7fELF": "a Linux program", b"MZ": "a Windows program", b"%PDF": "already a PDF",
    b"\x1f\x8b": "a gzip archive", b"7z\xbc\xaf": "a 7-Zip archive", b"Rar!": "a RAR archive",
}  # fmt: skip
_TEXT_SUFFIXES = {".txt": TEXT, ".text": TEXT, ".csv": OFFICE, ".md": MARKDOWN,
                  ".markdown": MARKDOWN}  # fmt: skip
_MAX_MEMBERS = 5000
_MAX_RATIO = 200  # a member expanding more than this is a bomb, not a document
_CHUNK = 1024 * 1024

SUPPORTED = (
    "Word (.docx, .doc), Excel (.xlsx, .xls), PowerPoint (.pptx, .ppt), OpenDocument "
    "(.odt, .ods, .odp), RTF, plain text, CSV, Markdown, PNG, JPEG, GIF, BMP, TIFF, WebP"
)


class Refused(ValueError):
    """This file will not be converted, and why (shown to the person as it is)."""


@dataclass(frozen=True)
class Sniffed:
    kind: str
    #: The suffix the converter is given, from the content (".docx", ".png", ".md").
    suffix: str
    label: str


def sniff(head: bytes, name: str, path: Path) -> Sniffed:
    """The kind of an uploaded file from its first bytes (and, for a zip, its listing)."""
    suffix = Path(name).suffix.lower()
    if not head:
        raise Refused("the file is empty")
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    if head.startswith(_OLE2):
        if suffix not in _LEGACY:
            raise Refused("an old Office file must be named .doc, .xls or .ppt")
        return Sniffed(OFFICE, suffix, "old Office document")
    if head.startswith(b"{\\rtf"):
        return Sniffed(OFFICE, ".rtf", "RTF document")
    for magic, image_suffix in _IMAGES.items():
        if head.startswith(magic):
            return Sniffed(IMAGE, image_suffix, "picture")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed(IMAGE, ".webp", "picture")
    for magic, what in _KNOWN_BINARIES.items():
        if head.startswith(magic):
            raise Refused(f"this is {what}, not a document this service converts")
    if _is_text(head):
        kind = _TEXT_SUFFIXES.get(suffix, TEXT)
        text_suffix = suffix if suffix in _TEXT_SUFFIXES else ".txt"
        return Sniffed(kind, text_suffix, "Markdown" if kind == MARKDOWN else "text")
    raise Refused(f"not a document this service converts (it accepts {SUPPORTED})")


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a cut multi-byte character at the end is fine
        if exc.start < len(head) - 4:
            return False
    return True


def _zip_kind(path: Path) -> Sniffed:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > _MAX_MEMBERS:
                raise Refused(f"the file holds {len(infos)} parts: too many for a document")
            names = {info.filename for info in infos}
            if "mimetype" in names:
                mimetype = archive.read("mimetype")[:100].decode("ascii", "replace").strip()
                if mimetype in _ODF:
                    return Sniffed(OFFICE, _ODF[mimetype], "OpenDocument file")
            if "[Content_Types].xml" in names:
                for folder, suffix in _OOXML.items():
                    if any(n.startswith(folder) for n in names):
                        return Sniffed(OFFICE, suffix, "Office document")
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise Refused(f"the file looks like a zip archive but cannot be read ({exc})") from None
    raise Refused("this is a zip archive, not an Office or OpenDocument file")


def check_unpacked(path: Path, max_unpacked_bytes: int) -> None:
    """Refuse a zip-based document that expands beyond ``max_unpacked_bytes`` or by a
    bomb's ratio, by inflating it (the sizes its header declares may lie)."""
    if not zipfile.is_zipfile(path):
        return
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.compress_size and info.file_size / info.compress_size > _MAX_RATIO:
                    raise Refused(
                        f"the part {info.filename[:80]!r} expands {_ratio(info)} times: "
                        "a zip bomb, not a document"
                    )
                with archive.open(info) as member:
                    while chunk := member.read(_CHUNK):
                        total += len(chunk)
                        if total > max_unpacked_bytes:
                            raise Refused(
                                f"the document expands to more than "
                                f"{max_unpacked_bytes // (1024 * 1024)} MB when unpacked"
                            )
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise Refused(f"the document's zip structure is damaged ({exc})") from None


def _ratio(info: zipfile.ZipInfo) -> str:
    return f"{info.file_size // max(1, info.compress_size):,}"
