"""Turn sniffed files into PDFs (or PNGs of their first page), all by LibreOffice in the
sandbox: pictures too, once Pillow has read their header against its decompression-bomb
guard; Markdown is rendered to HTML first (raw HTML in it is shown as text, never run).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from apps.convert.intake import IMAGE, MARKDOWN, Refused, check_unpacked
from apps.convert.sandbox import INSIDE, ConversionTimedOut, Sandbox
from apps.convert.settings import Limits

TARGETS = ("pdf", "png")


class ConversionFailed(Exception):
    """The converter could not make an output from this file (shown to the person)."""


def soffice_command(inputs: list[str], target: str) -> list[str]:
    """One LibreOffice run with a fresh user profile in its own work folder, so no state
    (macros, settings, a crashed profile) survives from one document to the next."""
    return [
        "soffice", f"-env:UserInstallation=file://{INSIDE}/.profile", "--headless",
        "--invisible", "--norestore", "--nolockcheck", "--nodefault",
        "--convert-to", target, "--outdir", f"{INSIDE}/out", *inputs,
    ]  # fmt: skip


def convert_office(sandbox: Sandbox, workdir: Path, sources: list[Path], target: str,
                   limits: Limits) -> list[Path | Exception]:  # fmt: skip
    """Convert ``sources`` in one LibreOffice run (its start is most of a small file's
    cost); each gets its output or the reason it has none. ``workdir`` is emptied."""
    inputs = workdir / "in"
    out = workdir / "out"
    for folder in (inputs, out):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    shutil.rmtree(workdir / ".profile", ignore_errors=True)
    names = []
    for index, source in enumerate(sources):
        name = f"{index}{source.suffix}"
        shutil.copyfile(source, inputs / name)
        names.append(f"{INSIDE}/in/{name}")
    timed_out: ConversionTimedOut | None = None
    try:
        finished = sandbox.run(
            workdir, soffice_command(names, target),
            # a shared run may take a little longer than one file, not n times as long
            timeout_s=limits.convert_timeout_s + 2 * (len(sources) - 1),
            memory_bytes=limits.convert_memory_bytes,
        )  # fmt: skip
        why = _why(finished.returncode, finished.log)
    except ConversionTimedOut as exc:
        timed_out, why = exc, "not converted: the run stopped before this file"
    results: list[Path | Exception] = []
    for index in range(len(sources)):
        made = out / f"{index}.{target}"
        if made.is_file() and made.stat().st_size > 0:
            results.append(made)
        elif timed_out is not None and not any(isinstance(r, Exception) for r in results):
            results.append(timed_out)  # LibreOffice takes files in order: this one hung it
        else:
            results.append(ConversionFailed(why))
    return results


def _why(returncode: int, log: str) -> str:
    if returncode in (-9, 137) or "std::bad_alloc" in log:
        return "the converter ran out of memory on this file"
    if "Error: source file could not be loaded" in log or "general input/output" in log:
        return "LibreOffice could not open this file: it may be damaged or not what its kind says"
    return f"LibreOffice made no output (exit status {returncode})"


def check_image(source: Path, limits: Limits) -> None:
    """Read a picture's header only (its size, against Pillow's bomb guard made an error):
    decoding it, where an image library's bugs live, happens in the sandbox."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = limits.max_image_pixels  # Pillow's guard, per process
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Refused(
            f"the picture is too large to convert safely (at most "
            f"{limits.max_image_pixels // 1_000_000} million pixels)"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise Refused(f"the picture cannot be read: {exc}") from None
    if width < 1 or height < 1:
        raise Refused("the picture has no pixels")


def markdown_to_html(source: Path, target: Path) -> Path:
    """Markdown to a page LibreOffice can print; raw HTML in it stays text."""
    from markdown_it import MarkdownIt

    text = source.read_text("utf-8", errors="replace")
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    target.write_text(
        f'<!doctype html><html><head><meta charset="utf-8"></head><body>{body}</body></html>',
        "utf-8",
    )
    return target


def convert_many(sandbox: Sandbox, workdir: Path, items: list[tuple[Path, str]], target: str,
                 limits: Limits) -> list[Path | Exception]:  # fmt: skip
    """Many files, the office ones in one LibreOffice run; when that run fails as a
    whole (a document hangs it), each is tried again alone so one bad file fails only
    itself."""
    results: list[Path | Exception | None] = [None] * len(items)
    office: list[tuple[int, Path]] = []
    workdir.mkdir(parents=True, exist_ok=True)
    for index, (source, kind) in enumerate(items):
        try:
            if kind == IMAGE:
                check_image(source, limits)
            else:
                check_unpacked(source, limits.max_unpacked_bytes)
            given = (
                markdown_to_html(source, workdir / f"md-{index}.html")
                if kind == MARKDOWN
                else source
            )
            office.append((index, given))
        except Refused as exc:
            results[index] = exc
    if office:
        for (index, _), outcome in zip(office, _office_runs(sandbox, workdir, office, target,
                                                            limits), strict=True):  # fmt: skip
            results[index] = outcome
    return [r if r is not None else ConversionFailed("not converted") for r in results]


def _office_runs(sandbox: Sandbox, workdir: Path, office: list[tuple[int, Path]], target: str,
                 limits: Limits) -> list[Path | Exception]:  # fmt: skip
    """One run for all. LibreOffice takes the files in order, so when a shared run ends
    early the first file without output is the one that hung (it fails: it would hang
    alone too) or crashed it (tried once alone); the files after it run again together."""
    sources = [source for _, source in office]
    made = convert_office(sandbox, workdir / "run", sources, target, limits)
    outcomes = [_keep(o, workdir, index) for (index, _), o in zip(office, made, strict=True)]
    missing = [i for i, o in enumerate(outcomes) if isinstance(o, Exception)]
    if len(sources) == 1 or not missing:
        return outcomes
    first, rest = missing[0], missing[1:]
    if not isinstance(outcomes[first], ConversionTimedOut):
        outcomes[first] = _office_runs(sandbox, workdir, [office[first]], target, limits)[0]
    if rest:
        again = _office_runs(sandbox, workdir, [office[i] for i in rest], target, limits)
        for i, outcome in zip(rest, again, strict=True):
            outcomes[i] = outcome
    return outcomes


def _keep(outcome: Path | Exception, workdir: Path, index: int) -> Path | Exception:
    """Move a run's output out of the folder the next run empties."""
    if isinstance(outcome, Exception):
        return outcome
    return outcome.replace(workdir / f"office-{index}{outcome.suffix}")
