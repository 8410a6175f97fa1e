"""One zip per upload: every output under its own file's name (made unique), and a short
report that says, file by file, what was converted and why anything was not."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from apps.convert.spool import Manifest

REPORT_NAME = "REPORT.txt"


def _unique(name: str, taken: set[str]) -> str:
    stem, dot, suffix = name.rpartition(".")
    candidate, n = name, 2
    while candidate.lower() in taken:
        candidate = f"{stem} ({n}){dot}{suffix}"
        n += 1
    taken.add(candidate.lower())
    return candidate


def _safe(name: str) -> str:
    """A name that unpacks where it should on every system: no folders, no odd bytes."""
    cleaned = "".join("_" if c in '/\\:*?"<>|' or not c.isprintable() else c for c in name)
    return cleaned.strip(". ") or "file"


def write_archive(manifest: Manifest, outcomes: dict[str, dict[str, Any]], outputs: Path,
                  work: Path) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """(the zip's path, a summary) from the upload's outputs and its members' outcomes."""
    taken = {REPORT_NAME.lower()}
    lines = [f"Converted to {manifest.target.upper()}:"]
    problems: list[str] = []
    converted = 0
    zip_path = work / "converted.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry in manifest.files:
            if entry.refused:
                problems.append(f"- {entry.name}: not converted: {entry.refused}")
                continue
            outcome = outcomes.get(entry.job, {})
            made = outputs / f"{entry.index}.{manifest.target}"
            if outcome.get("state") == "succeeded" and made.is_file():
                inner = _unique(f"{_safe(Path(entry.name).stem)}.{manifest.target}", taken)
                archive.write(made, inner)
                lines.append(f"- {entry.name} -> {inner}")
                converted += 1
            else:
                reason = outcome.get("error") or outcome.get("state") or "not converted"
                reason = str(reason).removeprefix("Abort: ")
                problems.append(f"- {entry.name}: not converted: {reason}")
        if converted == 0:
            lines.append("- (none)")
        if problems:
            lines += ["", "Not converted:", *problems]
        archive.writestr(REPORT_NAME, "\n".join(lines) + "\n")
    return zip_path, {"converted": converted, "failed": len(problems),
                      "total": len(manifest.files)}  # fmt: skip
