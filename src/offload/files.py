"""Job files: what a task attaches to its job (a converted document, a report), kept in
a file store named by URL, listed on the job, fetched through the HTTP API, and removed
with the job.

The store is a folder by default (``file:`` URLs): every worker and server that serves
the same jobs must see the same folder (one machine, or a shared mount). A job's files
live in a folder named by its id; a file is written under a temporary name and renamed,
so a reader never sees half of one. Names are checked before anything touches the disk:
no separators, no ``..``, nothing a shell or a browser would read differently.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

import msgspec

from offload.backends.base import Backend, IdsParams
from offload.errors import ConfigurationError

MAX_NAME_CHARS = 200
_COPY_CHUNK = 1024 * 1024
_PARTIAL = ".partial-"
#: A half-written file older than this was left by a writer that died.
STALE_PARTIAL_S = 3600.0


class FileInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    size: int  # bytes
    created_at: float  # seconds since the epoch


def check_name(name: str) -> str:
    """A file name a job may carry (``ValueError`` with what is wrong otherwise)."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
        raise ConfigurationError(f"a file name is 1 to {MAX_NAME_CHARS} characters, got {name!r}")
    try:
        if len(name.encode()) > 255:  # what a folder can hold
            raise ConfigurationError(f"file name {name!r:.60}...: over 255 bytes in UTF-8")
    except UnicodeEncodeError:
        raise ConfigurationError(f"file name {name!r:.60}: not valid Unicode") from None
    if name in (".", "..") or name.startswith((".", "-")) or not name.isprintable():
        raise ConfigurationError(
            f"file name {name!r}: must not start with '.' or '-' or hold control characters"
        )
    if any(c in name for c in '/\\:*?"<>|'):
        raise ConfigurationError(f'file name {name!r}: must not contain / \\ : * ? " < > |')
    return name


def _check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not job_id or len(job_id) > 200:
        raise ConfigurationError(f"not a job id: {job_id!r}")
    if job_id in (".", "..") or any(c in job_id for c in "/\\\0") or not job_id.isprintable():
        raise ConfigurationError(f"not a job id: {job_id!r}")
    return job_id


class LocalFiles:
    """Files in a folder: ``<root>/<job id>/<name>``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"<LocalFiles {self.root}>"

    def _folder(self, job_id: str) -> Path:
        return self.root / _check_job_id(job_id)

    def put(self, job_id: str, name: str, data: bytes | str | os.PathLike[str]) -> FileInfo:
        """Store ``data`` (bytes, or the path of a file to copy) as the job's file ``name``,
        replacing one of that name."""
        check_name(name)
        folder = self._folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=_PARTIAL, dir=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(data, bytes | bytearray | memoryview):
                    out.write(data)
                elif isinstance(data, str | os.PathLike):
                    with open(data, "rb") as source:
                        shutil.copyfileobj(source, out, _COPY_CHUNK)
                else:
                    raise TypeError(
                        f"attach takes bytes or a file's path, got {type(data).__name__}"
                    )
            os.chmod(partial, 0o644)
            os.replace(partial, folder / name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
        return self._info(folder / name)

    @staticmethod
    def _info(path: Path) -> FileInfo:
        st = path.stat()
        return FileInfo(name=path.name, size=st.st_size, created_at=st.st_mtime)

    def of_job(self, job_id: str) -> list[FileInfo]:
        folder = self._folder(job_id)
        try:
            entries = sorted(folder.iterdir())
        except FileNotFoundError:
            return []
        return [self._info(p) for p in entries if p.is_file() and not p.name.startswith(".")]

    def open(self, job_id: str, name: str) -> tuple[BinaryIO, FileInfo]:
        """The file for reading, and its size; ``LookupError`` if there is none."""
        check_name(name)
        path = self._folder(job_id) / name
        try:
            handle = path.open("rb")
        except OSError:  # missing, a folder, unreadable: none to give
            raise LookupError(f"job {job_id} has no file named {name!r}") from None
        return handle, FileInfo(name=name, size=os.fstat(handle.fileno()).st_size,
                                created_at=os.fstat(handle.fileno()).st_mtime)  # fmt: skip

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self._folder(job_id), ignore_errors=True)

    def job_ids(self) -> list[str]:
        """Jobs that have a folder here (for pruning the files of jobs that are gone)."""
        try:
            return sorted(p.name for p in self.root.iterdir() if p.is_dir())
        except FileNotFoundError:
            return []

    def stale_partials(self, older_than_s: float) -> int:
        """Remove files a writer left half-written (it died mid-copy); how many went."""
        removed, cutoff = 0, time.time() - older_than_s
        for partial in self.root.glob(f"*/{_PARTIAL}*"):
            with contextlib.suppress(OSError):
                if partial.stat().st_mtime < cutoff:
                    partial.unlink()
                    removed += 1
        return removed


def files_from_url(url: str) -> LocalFiles:
    """``file:///abs/folder`` or ``file:relative/folder``; other schemes are not built yet."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        raise ConfigurationError(
            f"files URL {url!r}: only file: folders are supported so far, e.g. "
            "file:///var/lib/offload/files (every worker and server must see it)"
        )
    path = unquote(parts.path) if not parts.netloc else unquote(parts.netloc + parts.path)
    if not path:
        raise ConfigurationError(f"files URL {url!r} names no folder")
    return LocalFiles(path)


def default_files_url(store_url: str) -> str:
    """Beside a SQLite file (``jobs.db`` keeps its files in ``jobs.db-files``), else a
    folder ``offload-files`` in the working directory."""
    parts = urlsplit(store_url)
    if parts.scheme == "sqlite" and parts.path not in ("", "/", "/:memory:"):
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        return "file:" + path + "-files"
    return "file:offload-files"


class FilesSweeper:
    """A leader service: the files of jobs that are gone (pruned or deleted) go too, and
    files a writer left half-written. One leader sweeps, every ``every_s``."""

    def __init__(self, files: LocalFiles, every_s: float = 60.0, batch: int = 200) -> None:
        self.files = files
        self.every_s = every_s
        self.batch = batch
        self._next_s = 0.0
        self.removed = 0

    async def tick(self, backend: Backend, now_s: float) -> float | None:
        if now_s < self._next_s:
            return None
        self._next_s = now_s + self.every_s
        job_ids = await asyncio.to_thread(self.files.job_ids)
        for start in range(0, len(job_ids), self.batch):
            chunk = job_ids[start : start + self.batch]
            alive = {r.id for r in await backend.get(IdsParams(ids=chunk))}
            for gone in (j for j in chunk if j not in alive):
                await asyncio.to_thread(self.files.delete, gone)
                self.removed += 1
        await asyncio.to_thread(self.files.stale_partials, STALE_PARTIAL_S)
        return None
