"""The conversion service's guards and its spool, as pure logic: quotas per address,
live-stream caps, a body cut off at its limit, and manifests that are damaged."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from apps.convert.guards import BodyTooLarge, Quota, Streams, limited_receive
from apps.convert.spool import Entry, Manifest, Spool


def test_a_quota_counts_uploads_and_bytes_per_address() -> None:
    quota = Quota(uploads=2, total_bytes=1000)
    assert quota.refusal("1.2.3.4", 400) is None
    assert quota.refusal("1.2.3.4", 400) is None
    assert "at most 2 uploads an hour" in (quota.refusal("1.2.3.4", 1) or "")
    assert quota.refusal("5.6.7.8", 900) is None  # another address has its own
    assert "at most 0 MB an hour" in (quota.refusal("5.6.7.8", 200) or "")
    expired = Quota(uploads=1, total_bytes=10**9, window_s=0.0)
    assert expired.refusal("a", 1) is None and expired.refusal("a", 1) is None


def test_streams_are_capped_per_session_and_in_all() -> None:
    streams = Streams(per_session=2, total=3)
    assert streams.enter("a") and streams.enter("a") and not streams.enter("a")
    assert streams.enter("b") and not streams.enter("c")  # 3 open in all
    streams.leave("a")
    assert streams.enter("c")


def test_a_body_is_cut_off_at_its_limit() -> None:
    chunks = [{"type": "http.request", "body": b"x" * 600, "more_body": True}] * 3

    async def receive() -> dict[str, Any]:
        return chunks.pop()

    bounded = limited_receive(receive, 1000)

    async def read_all() -> None:
        for _ in range(3):
            await bounded()

    with pytest.raises(BodyTooLarge):
        asyncio.run(read_all())


@pytest.mark.parametrize("text", ["null", "{broken", '{"upload": 3}',
                                  '{"upload":"a","owner":"o","created_at":"soon","target":"pdf",'
                                  '"when":"now"}'])  # fmt: skip
def test_a_damaged_manifest_reads_as_none(tmp_path: Path, text: str) -> None:
    spool = Spool(tmp_path)
    manifest = Manifest(upload="0a1b", owner="o", created_at=1.0, target="pdf", when="now",
                        files=[Entry(index=0, name="a.txt")])  # fmt: skip
    spool.create(manifest)
    assert spool.load("0a1b") == manifest
    (spool.folder("0a1b") / "manifest.json").write_text(text)
    assert spool.load("0a1b") is None
    assert spool.of_owner("o") == []
    assert spool.remove_unreadable("0a1b", older_than=0.0) is False  # too recent to go
    assert spool.remove_unreadable("0a1b", older_than=2e9) is True
    assert not spool.folder("0a1b").exists()


def test_upload_ids_never_reach_outside_the_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for bad in ("../etc", "a/b", "", "A" * 70, "..", "0a1b/.."):
        with pytest.raises(KeyError):
            spool.folder(bad)
        assert spool.load(bad) is None
