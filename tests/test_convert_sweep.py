"""Expired uploads are removed by the scheduled sweep: their jobs, their archive and
their folder, and only theirs; the e-mailed link then says so."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import pytest
from starlette.datastructures import Headers, UploadFile

from apps.convert.settings import Limits, Settings
from apps.convert.tasks import build_service
from apps.convert.uploads import Choice, accept
from offload import JobNotFound, JobState
from worker_helpers import WorkerThread, wait_until

pytestmark = pytest.mark.skipif(not Path("/usr/bin/soffice").exists(), reason="no LibreOffice")


def test_the_sweep_removes_what_expired_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # build_service only sets these where they are unset: keep this test's to itself
    monkeypatch.setenv("OFFLOAD_LINK_TTL_S", "2")
    monkeypatch.setenv("OFFLOAD_NOTICE_TEMPLATES", str(tmp_path))
    monkeypatch.delenv("OFFLOAD_URL", raising=False)
    service = build_service(Settings(data_dir=tmp_path / "data",
                                     limits=Limits(keep_s=2, slots=1)))  # fmt: skip
    app = service.app
    choice = Choice(target="pdf", when="now", email="")

    def upload(text: str) -> str:
        file = UploadFile(file=io.BytesIO(text.encode()), filename="a.txt",
                          size=len(text), headers=Headers({}))  # fmt: skip
        return asyncio.run(accept(service, "visitor:test", [file], choice)).upload

    try:
        old = upload("the old one")
        with WorkerThread(app, idle_check_s=0.05, queues=["convert", "default"]):
            manifest = service.spool.load(old)
            assert manifest is not None

            def archived() -> bool:
                try:
                    return app.job(manifest.archive_job).state is JobState.SUCCEEDED
                except JobNotFound:  # made once every file has ended
                    return False

            wait_until(archived, timeout_s=120)
            assert [f.name for f in app.files.of_job(manifest.archive_job)] == ["converted.zip"]
            time.sleep(2.2)  # the old upload's archive expires
            fresh = upload("the new one")
            swept = service.sweep()
        assert swept == {"removed": 1, "failed": 0}
        assert service.spool.load(old) is None and not service.spool.folder(old).exists()
        for job_id in [*(e.job for e in manifest.files), manifest.archive_job]:
            with pytest.raises(JobNotFound):
                app.job(job_id)
            assert app.files.of_job(job_id) == []
        assert service.spool.load(fresh) is not None  # not yet expired: kept
    finally:
        app.close()
