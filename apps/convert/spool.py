"""Where an upload waits for its conversions: a folder per upload holding its inputs,
its outputs and its manifest (who sent it, what each file became), and a folder per
owner listing their uploads, so "my conversions" reads one person's entries only.

The folder is shared by the web service and every worker (on several machines it must
be a shared file system, like offload's own files).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

_UPLOAD_ID = re.compile(r"[0-9a-f][0-9a-f-]{0,63}")


def is_upload_id(text: str) -> bool:
    """An id offload made (never a path: ``..`` or ``/`` cannot reach the file system)."""
    return _UPLOAD_ID.fullmatch(text) is not None


@dataclass
class Entry:
    index: int
    name: str
    kind: str = ""
    suffix: str = ""
    size_bytes: int = 0
    job: str = ""
    #: Why it was refused at upload (no job was made), else empty.
    refused: str = ""


@dataclass
class Manifest:
    upload: str
    owner: str
    created_at: float
    target: str
    when: str
    email: str = ""
    batch: str = ""
    archive_job: str = ""
    files: list[Entry] = field(default_factory=list)

    def to_json(self) -> str:
        return msgspec.json.encode(self).decode()

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Checked field by field: a damaged manifest is refused, never half read."""
        return msgspec.json.decode(text, type=cls)


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, upload: str) -> Path:
        if not is_upload_id(upload):
            raise KeyError(upload)
        return self.root / "uploads" / upload

    def inputs(self, upload: str) -> Path:
        return self.folder(upload) / "in"

    def outputs(self, upload: str) -> Path:
        return self.folder(upload) / "out"

    def _owner_folder(self, owner: str) -> Path:
        return self.root / "owners" / hashlib.sha256(owner.encode()).hexdigest()[:32]

    def create(self, manifest: Manifest) -> Path:
        folder = self.folder(manifest.upload)
        self.inputs(manifest.upload).mkdir(parents=True)
        self.outputs(manifest.upload).mkdir()
        self.save(manifest)
        return folder

    def save(self, manifest: Manifest) -> None:
        """Write the manifest whole or not at all (a reader never sees half of it)."""
        folder = self.folder(manifest.upload)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".manifest-")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(manifest.to_json())
        os.replace(temporary, folder / "manifest.json")
        owner_folder = self._owner_folder(manifest.owner)
        owner_folder.mkdir(parents=True, exist_ok=True)
        (owner_folder / manifest.upload).touch()

    def load(self, upload: str) -> Manifest | None:
        try:
            return Manifest.from_json((self.folder(upload) / "manifest.json").read_text("utf-8"))
        except (OSError, KeyError, ValueError, msgspec.DecodeError):
            return None

    def of_owner(self, owner: str, limit: int = 50) -> list[Manifest]:
        """The owner's uploads, newest first (ids grow with time)."""
        try:
            uploads = sorted(os.listdir(self._owner_folder(owner)), reverse=True)[:limit]
        except FileNotFoundError:
            return []
        found = [self.load(upload) for upload in uploads]
        return [m for m in found if m is not None and m.owner == owner]

    def all_uploads(self) -> list[str]:
        try:
            return sorted(os.listdir(self.root / "uploads"))
        except FileNotFoundError:
            return []

    def drop_work(self, upload: str) -> None:
        """Inputs and outputs go once the archive holds the results."""
        for folder in (self.inputs(upload), self.outputs(upload)):
            shutil.rmtree(folder, ignore_errors=True)

    def remove_unreadable(self, upload: str, older_than: float) -> bool:
        """An upload whose manifest cannot be read goes once its folder is old enough."""
        folder = self.folder(upload)
        try:
            if folder.stat().st_mtime > older_than:
                return False
        except FileNotFoundError:
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return True

    def remove(self, manifest: Manifest) -> None:
        (self._owner_folder(manifest.owner) / manifest.upload).unlink(missing_ok=True)
        shutil.rmtree(self.folder(manifest.upload), ignore_errors=True)
