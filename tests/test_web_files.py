"""Job files over HTTP against a real server and worker: attached by the task, listed,
streamed to their owner, fetched through signed links (tampered, expired, another
owner's, a deleted job's), and gone with the job."""

from __future__ import annotations

import base64
import json
import time

import httpx

from web_helpers import Served, served, start_job

__all__ = ["served"]


def _made(served: Served, client: httpx.Client, pages: int = 3) -> str:
    job_id = start_job(client, {"task": "make_report", "args": ["Q3", pages]}).json()["id"]
    assert served.wait_for(client, job_id)["state"] == "succeeded"
    return job_id


def test_a_tasks_files_are_listed_and_streamed_to_their_owner(served: Served) -> None:
    with served.client("alice") as alice, served.client("bob") as bob:
        job_id = _made(served, alice, pages=50_000)
        listed = alice.get(f"/api/v1/jobs/{job_id}/files").json()
        assert [(f["name"], f["size"]) for f in listed] == [
            ("pages.csv", len(b"page,words\n") + sum(len(f"{i},100\n") for i in range(50_000))),
            ("report.txt", 3 * 50_000)]  # fmt: skip
        assert alice.get(f"/api/v1/jobs/{job_id}").json()["links"]["files"].endswith("/files")
        with alice.stream("GET", listed[1]["links"]["download"]) as response:
            assert response.status_code == 200
            assert response.headers["content-disposition"].startswith("attachment;")
            assert response.headers["x-content-type-options"] == "nosniff"
            assert int(response.headers["content-length"]) == 150_000
            body = b"".join(response.iter_bytes())
        assert body == b"Q3\n" * 50_000
        assert alice.get(f"/api/v1/jobs/{job_id}/files/nope.txt").status_code == 404
        assert alice.get(f"/api/v1/jobs/{job_id}/files/..%2Fjobs.db").status_code in (404, 422)
        assert bob.get(f"/api/v1/jobs/{job_id}/files").status_code == 404
        assert bob.get(listed[1]["links"]["download"]).status_code == 404
        assert bob.post(f"{listed[1]['links']['sign']}").status_code == 404


def test_a_signed_link_works_without_a_token_until_it_expires(served: Served) -> None:
    with served.client("alice") as alice, served.client("alice", "viewer") as viewer:
        job_id = _made(served, alice)
        assert viewer.post(f"/api/v1/jobs/{job_id}/files/report.txt/link").status_code == 403
        link = alice.post(f"/api/v1/jobs/{job_id}/files/report.txt/link").json()
        short = alice.post(f"/api/v1/jobs/{job_id}/files/report.txt/link",
                           params={"expires_in_s": 60}).json()  # fmt: skip
        assert alice.post(f"/api/v1/jobs/{job_id}/files/report.txt/link",
                          params={"expires_in_s": 1}).status_code == 422  # fmt: skip
        assert alice.post(f"/api/v1/jobs/{job_id}/files/none.txt/link").status_code == 404
    anyone = httpx.Client(base_url=served.url)
    got = anyone.get(link["url"])
    assert got.status_code == 200 and got.content == b"Q3\n" * 3
    assert anyone.get(short["url"]).status_code == 200
    token = link["url"].rsplit("/", 1)[1]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert anyone.get(f"/api/v1/files/{tampered}").status_code == 404
    payload, _, signature = token.partition(".")
    fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    fields[1] = "pages.csv"  # another file of the same job, with the old signature
    forged = base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")
    assert anyone.get(f"/api/v1/files/{forged}.{signature}").status_code == 404
    assert anyone.get("/api/v1/files/garbage").status_code == 404


def test_an_expired_link_says_so(served: Served) -> None:
    from offload import Offload
    from offload.links import sign

    with served.client("alice") as alice:
        job_id = _made(served, alice)
    app = Offload(served.store_url)
    try:
        secret = app.admin.link_secret()
    finally:
        app.close()
    old, _ = sign(secret, job_id, "alice", "report.txt", expires_at=int(time.time()) - 5)
    answer = httpx.get(f"{served.url}/api/v1/files/{old}")
    assert answer.status_code == 410 and "expired" in answer.json()["detail"]


def test_files_go_with_their_job(served: Served) -> None:
    with served.client("alice") as alice:
        job_id = _made(served, alice)
        link = alice.post(f"/api/v1/jobs/{job_id}/files/report.txt/link").json()
        assert alice.delete(f"/api/v1/jobs/{job_id}").status_code == 204
        assert httpx.get(f"{served.url}{link['url']}").status_code == 404
        assert alice.get(f"/api/v1/jobs/{job_id}/files").status_code == 404


def test_a_signed_job_link_shows_the_outcome_and_its_files_not_the_arguments(
    served: Served,
) -> None:
    with served.client("alice") as alice:
        job_id = _made(served, alice)
        link = alice.post(f"/api/v1/jobs/{job_id}/link").json()
        assert served.client("bob").post(f"/api/v1/jobs/{job_id}/link").status_code == 404
    page = httpx.get(f"{served.url}{link['url']}").json()
    assert page["state"] == "succeeded" and page["result"] == "report.txt"
    assert "args" not in page and "kwargs" not in page and "owner" not in page
    assert page["link_expires_at"] == link["expires_at"]
    names = {f["name"]: f for f in page["files"]}
    assert set(names) == {"report.txt", "pages.csv"}
    got = httpx.get(f"{served.url}{names['report.txt']['url']}")
    assert got.status_code == 200 and got.content == b"Q3\n" * 3
    assert httpx.get(f"{served.url}{link['url'].replace('/shared/', '/files/')}").status_code == 404
