"""The folder file store: names that could escape it are refused, writes are whole or
absent, and the sweep removes what is left of jobs that are gone."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from offload.backends.base import EnqueueParams
from offload.backends.memory import memory_backend
from offload.errors import ConfigurationError
from offload.files import FilesSweeper, LocalFiles, default_files_url, files_from_url
from offload.ids import IdGenerator
from offload.records import NewJob


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../x", "a/b", "a\\b", ".hidden", "-rf", "a\nb", "x" * 201, "c:d", "é" * 200],
)
def test_names_that_could_escape_or_mislead_are_refused(tmp_path: Path, name: str) -> None:
    files = LocalFiles(tmp_path)
    with pytest.raises(ConfigurationError):
        files.put("job-1", name, b"x")
    assert list(tmp_path.rglob("*")) in ([], [tmp_path / "job-1"])


@pytest.mark.parametrize("job_id", ["", "..", "a/b", "x\0y"])
def test_job_ids_that_could_escape_are_refused(tmp_path: Path, job_id: str) -> None:
    with pytest.raises(ConfigurationError):
        LocalFiles(tmp_path).put(job_id, "a.txt", b"x")


def test_put_list_open_replace_and_delete(tmp_path: Path) -> None:
    files = LocalFiles(tmp_path / "store")
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3_000_000))
    assert files.put("j1", "big.bin", source).size == 3_000_000
    files.put("j1", "note.txt", b"first")
    files.put("j1", "note.txt", b"second")  # replaces
    assert [(f.name, f.size) for f in files.of_job("j1")] == [("big.bin", 3_000_000),
                                                              ("note.txt", 6)]  # fmt: skip
    handle, info = files.open("j1", "note.txt")
    with handle:
        assert handle.read() == b"second" and info.size == 6
    with pytest.raises(LookupError):
        files.open("j1", "missing.txt")
    assert files.of_job("nobody") == []
    files.delete("j1")
    assert files.of_job("j1") == [] and files.job_ids() == []


def test_a_failed_copy_leaves_nothing_behind(tmp_path: Path) -> None:
    files = LocalFiles(tmp_path)
    with pytest.raises(FileNotFoundError):
        files.put("j1", "gone.txt", tmp_path / "does-not-exist")
    with pytest.raises(TypeError):
        files.put("j1", "odd.txt", 12)  # type: ignore[arg-type]
    assert files.of_job("j1") == [] and list((tmp_path / "j1").iterdir()) == []


def test_urls(tmp_path: Path) -> None:
    assert files_from_url(f"file://{tmp_path}/f").root == tmp_path / "f"
    assert default_files_url("sqlite:///jobs.db") == "file:jobs.db-files"
    assert default_files_url("sqlite:////var/lib/jobs.db") == "file:/var/lib/jobs.db-files"
    assert default_files_url("redis://localhost") == "file:offload-files"
    with pytest.raises(ConfigurationError, match="file:"):
        files_from_url("s3://bucket/files")


def test_the_sweep_removes_files_of_jobs_that_are_gone(tmp_path: Path) -> None:
    files = LocalFiles(tmp_path)
    backend = memory_backend("memory://")
    new_id = IdGenerator()
    kept = NewJob(id=new_id(), task="t", queue="q", payload=b"[[],{}]", run_at=0.0)

    async def scenario() -> int:
        await backend.enqueue(EnqueueParams(jobs=[kept]))
        files.put(kept.id, "a.txt", b"a")
        files.put("deleted-job", "b.txt", b"b")
        sweeper = FilesSweeper(files)
        await sweeper.tick(backend, now_s=1.0)
        await sweeper.tick(backend, now_s=2.0)  # not due again yet
        return sweeper.removed

    assert asyncio.run(scenario()) == 1
    assert files.job_ids() == [kept.id]
