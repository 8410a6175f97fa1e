"""Real office documents, and hostile ones, for the conversion service's tests and benchmark.

Each normal sample carries a distinctive word, `marker(kind)` (e.g. "Quokka-docx"), so a test can
check that the PDF made from it really holds the document's text (pypdf's text extraction finds
it). Default file names have a different stem for every kind: ``soffice --convert-to pdf``
names its output after the stem, so report.docx and report.odt in one call overwrite each
other's PDF. The hostile samples are what an upload form will be sent sooner or later; each
one's docstring says what it tests and what LibreOffice 7.4.7 (Debian) did with it unsandboxed,
as measured on a 2-core machine. Nothing here needs LibreOffice: only the document libraries of
the dev extra (python-docx, openpyxl, python-pptx, odfpy, Pillow).
"""

from __future__ import annotations

import os
import random
import struct
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

WORD = "Quokka"


def marker(kind: str) -> str:
    """The text that the sample of `kind` carries, and its PDF must show."""
    return f"{WORD}-{kind}"


# --- normal documents -----------------------------------------------------------------------


def make_docx(folder: Path, name: str = "docx-sample.docx") -> Path:
    """A Word document: a heading, a paragraph and a small table."""
    import docx

    doc = docx.Document()
    doc.add_heading("Quarterly report", level=1)
    doc.add_paragraph(f"The {marker('docx')} paragraph says the numbers went up.")
    table = doc.add_table(rows=2, cols=2)
    for i, cell in enumerate(table._cells):
        cell.text = f"cell {i}"
    path = Path(folder) / name
    doc.save(str(path))
    return path


def make_xlsx(folder: Path, name: str = "xlsx-sample.xlsx") -> Path:
    """An Excel workbook: a label, numbers and a formula."""
    import openpyxl  # type: ignore[import-untyped,unused-ignore]

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet["A1"] = marker("xlsx")
    for row in range(2, 12):
        sheet.cell(row=row, column=1, value=row * 10)
    sheet["A12"] = "=SUM(A2:A11)"
    path = Path(folder) / name
    book.save(path)
    return path


def make_pptx(folder: Path, name: str = "pptx-sample.pptx") -> Path:
    """A PowerPoint deck: one title slide and one bulleted slide."""
    import pptx

    deck = pptx.Presentation()
    title = deck.slides.add_slide(deck.slide_layouts[0])
    title.shapes.title.text = marker("pptx")
    title.placeholders[1].text = "A presentation sample"
    bullets = deck.slides.add_slide(deck.slide_layouts[1])
    bullets.shapes.title.text = "Agenda"
    bullets.placeholders[1].text = "First point\nSecond point"
    path = Path(folder) / name
    deck.save(str(path))
    return path


def make_odt(folder: Path, name: str = "odt-sample.odt") -> Path:
    """An OpenDocument text: a heading and a paragraph."""
    from odf.opendocument import OpenDocumentText  # type: ignore[import-untyped,unused-ignore]
    from odf.text import H, P  # type: ignore[import-untyped,unused-ignore]

    doc = OpenDocumentText()
    doc.text.addElement(H(outlinelevel=1, text="Minutes"))
    doc.text.addElement(P(text=f"The {marker('odt')} paragraph of the minutes."))
    path = Path(folder) / name
    doc.save(str(path))
    return path


def make_ods(folder: Path, name: str = "ods-sample.ods") -> Path:
    """An OpenDocument spreadsheet: a label and a column of numbers."""
    from odf.opendocument import OpenDocumentSpreadsheet  # type: ignore[import-untyped,unused-ignore]
    from odf.table import Table, TableCell, TableRow  # type: ignore[import-untyped,unused-ignore]
    from odf.text import P  # type: ignore[import-untyped,unused-ignore]

    doc = OpenDocumentSpreadsheet()
    table = Table(name="Sheet1")
    rows: list[tuple[str, str]] = [("string", marker("ods"))]
    rows += [("float", str(n * 7)) for n in range(1, 11)]
    for kind, value in rows:
        row = TableRow()
        if kind == "string":
            cell = TableCell(valuetype="string")
        else:
            cell = TableCell(valuetype="float", value=value)
        cell.addElement(P(text=value))
        row.addElement(cell)
        table.addElement(row)
    doc.spreadsheet.addElement(table)
    path = Path(folder) / name
    doc.save(str(path))
    return path


def make_rtf(folder: Path, name: str = "rtf-sample.rtf") -> Path:
    """A hand-written RTF file, as old word processors and mail clients send."""
    text = (
        r"{\rtf1\ansi\deff0{\fonttbl{\f0 Helvetica;}}"
        "\n"
        r"\f0\fs28 {\b Memo}\par"
        "\n"
        rf"The {marker('rtf')} memo, in rich text.\par"
        "\n}"
    )
    path = Path(folder) / name
    path.write_text(text, encoding="ascii")
    return path


def make_txt(folder: Path, name: str = "txt-sample.txt") -> Path:
    """A plain UTF-8 text file (with a non-ASCII letter, to catch encoding slips)."""
    path = Path(folder) / name
    path.write_text(f"Notes\n\nThe {marker('txt')} line, café included.\n", encoding="utf-8")
    return path


def make_md(folder: Path, name: str = "md-sample.md") -> Path:
    """A Markdown file: LibreOffice has no Markdown filter and shows it as plain text."""
    path = Path(folder) / name
    path.write_text(
        f"# Readme\n\nThe **{marker('md')}** project.\n\n- one\n- two\n", encoding="utf-8"
    )
    return path


def make_png(folder: Path, name: str = "png-sample.png") -> Path:
    """A small valid PNG image (no text to find: the PDF just has to exist)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 200), (250, 250, 240))
    ImageDraw.Draw(image).rectangle((20, 20, 300, 180), outline=(200, 40, 40), width=6)
    path = Path(folder) / name
    image.save(path, format="PNG")
    return path


def make_jpeg(folder: Path, name: str = "jpeg-sample.jpg") -> Path:
    """A small valid JPEG photo-like image (no text to find)."""
    from PIL import Image

    image = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    path = Path(folder) / name
    image.save(path, format="JPEG", quality=85)
    return path


class SampleMaker(Protocol):
    def __call__(self, folder: Path, name: str = ...) -> Path: ...


MAKERS: dict[str, SampleMaker] = {
    "docx": make_docx,
    "xlsx": make_xlsx,
    "pptx": make_pptx,
    "odt": make_odt,
    "ods": make_ods,
    "rtf": make_rtf,
    "txt": make_txt,
    "md": make_md,
    "png": make_png,
    "jpeg": make_jpeg,
}
# Kinds whose PDF must contain marker(kind); the images have no text.
TEXT_KINDS = ("docx", "xlsx", "pptx", "odt", "ods", "rtf", "txt", "md")


def make_all(folder: Path) -> dict[str, Path]:
    """One sample of each normal kind in `folder`, by kind."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {kind: make(folder) for kind, make in MAKERS.items()}


# --- hostile inputs -------------------------------------------------------------------------
# Each returns the path of one file that an upload form will be sent sooner or later. The
# service must reject it, or convert it inside its limits, and never leak the host through it.

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/'
    'vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Default Extension="png" ContentType="image/png"/>'
    '<Override PartName="/word/document.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
)
_PACKAGE_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="word/document.xml"/></Relationships>'
)
_W_NS = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
_IMAGE_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/image"


def _deflated_zeros(size: int, chunk: int = 1 << 20) -> tuple[list[bytes], int]:
    """Raw deflate of `size` zero bytes, built in milliseconds, and the zeros' CRC-32.

    After a full flush a deflater forgets its history, so every whole chunk of zeros compresses
    to the same bytes: one chunk is compressed and its output repeated.
    """
    zeros = bytes(chunk)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(size, chunk)
    parts = [block] * whole
    parts.append(deflater.compress(bytes(rest)) + deflater.flush())
    crc = 0
    for _ in range(whole):
        crc = zlib.crc32(zeros, crc)
    return parts, zlib.crc32(bytes(rest), crc)


def _write_zip(path: Path, members: Iterable[tuple[str, list[bytes], int, int]]) -> None:
    """A zip of already-deflated members (name, deflated parts, size, CRC-32), without zip64."""
    with path.open("wb") as out:
        central: list[bytes] = []
        for name, parts, size, crc in members:
            packed = sum(len(p) for p in parts)
            raw = name.encode()
            fields = (20, 0, 8, 0, 0x21, crc, packed, size, len(raw), 0)
            offset = out.tell()
            out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields) + raw)
            for part in parts:
                out.write(part)
            central.append(
                struct.pack("<IH", 0x02014B50, 20)
                + struct.pack("<HHHHHIIIHH", *fields)
                + struct.pack("<HHHII", 0, 0, 0, 0, offset)
                + raw
            )
        start = out.tell()
        directory = b"".join(central)
        out.write(directory)
        count = len(central)
        out.write(
            struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(directory), start, 0)
        )


def _deflated(data: str | bytes) -> tuple[list[bytes], int, int]:
    raw = data.encode() if isinstance(data, str) else data
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    return [deflater.compress(raw) + deflater.flush()], len(raw), zlib.crc32(raw)


def zip_bomb_docx(folder: Path, size: int = 2 << 30, name: str = "bomb.docx") -> Path:
    """A ~2 MB .docx whose picture expands to `size` (2 GiB) of zeros: upload guards, tmpfs caps.

    A valid Word package (it names marker("bomb")) whose word/media/image1.png member is the
    bomb; the zip's directory declares the true size, so a guard can refuse it before
    inflating. Made in about half a second. LibreOffice inflates the whole picture into a temp
    file: unsandboxed it took ~10 s, 2 GiB in $TMPDIR (RSS stayed ~200 MB) and still wrote a
    PDF. Under bwrap's plain ``--tmpfs /tmp`` those 2 GiB are RAM (measured: +2 GB shared
    memory); with ``--size 268435456 --tmpfs /tmp`` it finished in 2 s with 250 MB.
    """
    if not 0 < size < 0xFFFFFFFF:
        raise ValueError("size must fit a zip without zip64")
    document = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:document {_W_NS} '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" '
        'xmlns:v="urn:schemas-microsoft-com:vml"><w:body>'
        f"<w:p><w:r><w:t>{marker('bomb')}</w:t></w:r></w:p>"
        '<w:p><w:r><w:pict><v:shape style="width:100pt;height:100pt">'
        '<v:imagedata r:id="rId1"/></v:shape></w:pict></w:r></w:p></w:body></w:document>'
    )
    document_rels = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{_IMAGE_REL}" Target="media/image1.png"/></Relationships>'
    )
    members: list[tuple[str, list[bytes], int, int]] = [
        (member, *_deflated(text))
        for member, text in (
            ("[Content_Types].xml", _CONTENT_TYPES),
            ("_rels/.rels", _PACKAGE_RELS),
            ("word/document.xml", document),
            ("word/_rels/document.xml.rels", document_rels),
        )
    ]
    parts, crc = _deflated_zeros(size)
    members.append(("word/media/image1.png", parts, size, crc))
    path = Path(folder) / name
    _write_zip(path, members)
    return path


# The smallest x86-64 Linux program: exit(0). A real ELF header, so `file` and libmagic say
# "ELF 64-bit LSB executable" whatever the file is named.
_ELF_CODE = bytes.fromhex("b83c00000031ff0f05")  # mov eax, 60; xor edi, edi; syscall
_ELF = (
    b"\x7fELF\x02\x01\x01"
    + bytes(9)
    + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, 0x400078, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    + struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 0x81, 0x81, 0x1000)
    + _ELF_CODE
)


def elf_as_docx(folder: Path, name: str = "report.docx") -> Path:
    """A Linux executable named report.docx: type sniffing must refuse it, not trust the name.

    LibreOffice prints "Error: source file could not be loaded", writes no PDF, and exits 0:
    the exit status alone does not tell a failed conversion.
    """
    path = Path(folder) / name
    path.write_bytes(_ELF)
    return path


def random_as_docx(folder: Path, name: str = "random.docx", seed: int = 7) -> Path:
    """64 KiB of random bytes named .docx: no format at all; the service must not trust the name.

    LibreOffice falls back to importing it as plain text: 8 s and a 7-page PDF of garbage,
    exit status 0. A service that wants to refuse it must sniff the type itself.
    """
    path = Path(folder) / name
    path.write_bytes(random.Random(seed).randbytes(64 << 10))
    return path


def png_as_pdf(folder: Path, name: str = "scan.pdf") -> Path:
    """A PNG named .pdf: the name lies about a harmless type; sniffing must see an image.

    LibreOffice detects the content and converts it as an image (draw_pdf_Export, one page).
    """
    source = make_png(Path(folder), name=f".{name}.tmp.png")
    path = Path(folder) / name
    os.replace(source, path)
    return path


def linked_image_docx(folder: Path, url: str, name: str = "linked-docx.docx") -> Path:
    """A .docx whose picture is a link to `url`, not embedded: LibreOffice loads it to render.

    Unsandboxed, LibreOffice 7.4 fetches an http:// link while converting (OPTIONS then GET,
    seen by a local http.server; the served PNG ends up in the PDF) and reads a file:// link
    (strace shows the open; an image outside the job folder ends up in the PDF, pypdf counts
    1 image; /etc/passwd is opened too but is no picture, so nothing shows). In the bwrap
    sandbox: no request and no image. Names marker("linked").
    """
    import io

    import docx
    from docx.opc.constants import RELATIONSHIP_TYPE
    from docx.oxml.ns import qn
    from PIL import Image

    doc = docx.Document()
    doc.add_paragraph(f"{marker('linked')}: the picture below is a link.")
    placeholder = io.BytesIO()
    Image.new("RGB", (8, 8)).save(placeholder, format="PNG")
    doc.add_picture(placeholder)
    # python-docx only embeds: point the picture at an external relationship instead
    # (r:link, TargetMode="External"), and drop the embedded copy.
    blip = doc.element.body.xpath(".//a:blip")[0]
    embedded = blip.get(qn("r:embed"))
    external = doc.part.relate_to(url, RELATIONSHIP_TYPE.IMAGE, is_external=True)
    del blip.attrib[qn("r:embed")]
    blip.set(qn("r:link"), external)
    doc.part.drop_rel(embedded)
    path = Path(folder) / name
    doc.save(str(path))
    return path


def linked_image_odt(folder: Path, url: str, name: str = "linked-odt.odt") -> Path:
    """An .odt whose picture is <draw:image xlink:href=url>: the ODF twin of linked_image_docx.

    Unsandboxed, LibreOffice 7.4 fetches an http:// link and reads a file:// one while
    converting, as for the .docx (verified the same way); in the bwrap sandbox neither.
    Names marker("linked").
    """
    from odf.draw import Frame  # type: ignore[import-untyped,unused-ignore]
    from odf.draw import Image as DrawImage  # type: ignore[import-untyped,unused-ignore]
    from odf.opendocument import OpenDocumentText  # type: ignore[import-untyped,unused-ignore]
    from odf.text import P  # type: ignore[import-untyped,unused-ignore]

    doc = OpenDocumentText()
    paragraph = P(text=f"{marker('linked')}: the picture here is a link. ")
    frame = Frame(name="linked", anchortype="as-char", width="3cm", height="3cm")
    frame.addElement(DrawImage(href=url, type="simple", show="embed", actuate="onLoad"))
    paragraph.addElement(frame)
    doc.text.addElement(paragraph)
    path = Path(folder) / name
    doc.save(str(path))
    return path


def linked_object_odt(folder: Path, url: str, name: str = "linked-object.odt") -> Path:
    """An .odt with an OLE object linked to `url` (<draw:object xlink:href>): another fetch.

    Unsandboxed, LibreOffice 7.4 sends OPTIONS, HEAD and GET for it while converting, though it
    renders only an "Object 1" placeholder: server-side request forgery without images.
    Names marker("linked").
    """
    from odf.draw import Frame, Object  # type: ignore[import-untyped,unused-ignore]
    from odf.opendocument import OpenDocumentText  # type: ignore[import-untyped,unused-ignore]
    from odf.text import P  # type: ignore[import-untyped,unused-ignore]

    doc = OpenDocumentText()
    paragraph = P(text=f"{marker('linked')}: a linked object. ")
    frame = Frame(name="object", anchortype="as-char", width="8cm", height="4cm")
    frame.addElement(Object(href=url, type="simple", show="embed", actuate="onLoad"))
    paragraph.addElement(frame)
    doc.text.addElement(paragraph)
    path = Path(folder) / name
    doc.save(str(path))
    return path


def include_text_rtf(
    folder: Path, target: str = "/etc/passwd", name: str = "include-rtf.rtf"
) -> Path:
    """An RTF with field INCLUDETEXT "/etc/passwd": a guard that host files never reach the PDF.

    LibreOffice 7.4.7 does not evaluate the field: it shows the stored result ("cached-result")
    and "root:" is not in the PDF even unsandboxed (verified). Kept as a regression guard.
    """
    text = (
        r"{\rtf1\ansi\deff0{\fonttbl{\f0 Helvetica;}}\f0 "
        rf"{marker('include')}\par"
        rf'{{\field{{\*\fldinst INCLUDETEXT "{target}"}}{{\fldrslt cached-result}}}}\par}}'
    )
    path = Path(folder) / name
    path.write_text(text, encoding="ascii")
    return path


def include_text_docx(
    folder: Path, target: str = "/etc/passwd", name: str = "include-docx.docx"
) -> Path:
    """A .docx with an INCLUDETEXT "/etc/passwd" field: same guard as include_text_rtf.

    LibreOffice 7.4.7 shows the stored result, not the file (verified): no leak unsandboxed.
    """
    import docx
    from docx.oxml import parse_xml
    from docx.oxml.ns import nsdecls

    doc = docx.Document()
    doc.add_paragraph(marker("include"))
    paragraph = doc.add_paragraph()._p
    for run in (
        '<w:fldChar w:fldCharType="begin"/>',
        f'<w:instrText xml:space="preserve"> INCLUDETEXT "{target}" </w:instrText>',
        '<w:fldChar w:fldCharType="separate"/>',
        "<w:t>cached-result</w:t>",
        '<w:fldChar w:fldCharType="end"/>',
    ):
        paragraph.append(parse_xml(f"<w:r {nsdecls('w')}>{run}</w:r>"))
    path = Path(folder) / name
    doc.save(str(path))
    return path


def slow_ods(folder: Path, rows: int = 1_048_575, columns: int = 8, name: str = "slow.ods") -> Path:
    """An 800-byte spreadsheet that keeps LibreOffice busy for minutes: the time limit must end it.

    One row of text repeated (table:number-rows-repeated) down all 1,048,575 rows of a sheet:
    tiny to send, tens of thousands of PDF pages to lay out. Unsandboxed, LibreOffice 7.4 took
    11 s for rows=100_000, and 312 s (400 MB RSS, a 55 MB PDF) for the default; killed after
    30 s in bwrap (--die-with-parent), it left a partial lu*.tmp file in its --outdir.
    """
    ns = (
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
    )
    text = f"<text:p>{marker('slow')}</text:p>"
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<office:document-content {ns} '
        'office:version="1.3"><office:body><office:spreadsheet><table:table table:name="Sheet1">'
        f'<table:table-row><table:table-cell office:value-type="string">{text}'
        "</table:table-cell></table:table-row>"
        f'<table:table-row table:number-rows-repeated="{rows}">'
        f'<table:table-cell office:value-type="string" table:number-columns-repeated="{columns}">'
        f"{text}</table:table-cell></table:table-row>"
        "</table:table></office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<manifest:manifest xmlns:manifest='
        '"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.3">'
        '<manifest:file-entry manifest:full-path="/" manifest:media-type='
        '"application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    path = Path(folder) / name
    with zipfile.ZipFile(path, "w") as package:
        package.writestr(
            "mimetype", "application/vnd.oasis.opendocument.spreadsheet", zipfile.ZIP_STORED
        )
        package.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
        package.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
    return path


def pixel_bomb_png(folder: Path, side: int = 30_000, name: str = "huge.png") -> Path:
    """A ~110 KB PNG declaring side x side (30000x30000) pixels: Pillow's DecompressionBombError.

    900 megapixels is over twice Image.MAX_IMAGE_PIXELS, so Image.open raises
    DecompressionBombError at once. A valid 1-bit greyscale image (every row is filter 0 and
    zeros): Pillow decodes it when the guard is off. LibreOffice converts it (17 s, peak RSS
    1.2 GB, a one-page PDF): only a memory limit stops a bigger one.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    raw_size = side * (1 + (side + 7) // 8)
    parts, _ = _deflated_zeros(raw_size)
    adler = ((raw_size % 65521) << 16) | 1  # Adler-32 of raw_size zero bytes
    stream = b"\x78\xda" + b"".join(parts) + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path = Path(folder) / name
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
    )
    return path
