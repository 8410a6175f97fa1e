"""The HTTP API against a real ``offload serve`` (uvicorn on a free port) and a real worker,
on each store a server and a worker can share: start, poll, fetch; idempotency; live
events; owners kept apart; every bad input a 4xx that says what to do."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from web_helpers import Served, env_for, offload_command, served, sse_events

__all__ = ["served"]  # the fixture: a server and a worker per store

SIZES = [{"width": 640, "height": 480}, {"width": 32, "height": 32}]


def _start(client: httpx.Client, body: dict, **headers: str) -> httpx.Response:
    return client.post("/api/v1/jobs", json=body, headers=headers)


# -- the async request-reply pattern ------------------------------------------------


def test_a_job_is_started_at_once_then_polled_to_its_result(served: Served) -> None:
    with served.client() as alice:
        answer = _start(alice, {"task": "resize", "args": ["cat.png", SIZES]})
        assert answer.status_code == 202
        assert answer.headers["Location"] == f"/api/v1/jobs/{answer.json()['id']}"
        assert int(answer.headers["Retry-After"]) >= 1
        assert answer.json()["state"] in ("queued", "running")
        assert answer.json()["owner"] == "alice"
        job = served.wait_for(alice, answer.json()["id"])
        polled = alice.get(answer.headers["Location"]).json()
    assert job["state"] == "succeeded"
    assert polled["result"] == {"name": "cat.png", "made": 2, "quality": 80}
    assert polled["progress"] == 1.0 and polled["progress_message"] == "size 2"
    (attempt,) = polled["attempts"]
    assert attempt["outcome"] == "succeeded" and attempt["started_at"] and attempt["ended_at"]


def test_a_failed_job_shows_its_error_and_every_attempt(served: Served) -> None:
    with served.client() as alice:
        job_id = _start(alice, {"task": "fail", "kwargs": {"message": "no paper"}}).json()["id"]
        job = served.wait_for(alice, job_id)
    assert job["state"] == "dead"
    assert job["error"]["type"] == "RuntimeError" and job["error"]["message"] == "no paper"
    assert [a["outcome"] for a in job["attempts"]] == ["failed"]


def test_options_are_applied_and_checked(served: Served) -> None:
    with served.client() as alice:
        later = _start(alice, {"task": "wait_s", "args": [0], "delay": 3600, "priority": 5,
                               "queue": "default"})  # fmt: skip
        assert later.status_code == 202
        assert later.json()["state"] == "scheduled" and later.json()["priority"] == 5
        assert alice.post(f"/api/v1/jobs/{later.json()['id']}/cancel").status_code == 200
        for bad in ({"delay": -1}, {"priority": 10**9}, {"queue": ""}, {"colour": "red"}):
            answer = _start(alice, {"task": "wait_s", "args": [0], **bad})
            assert answer.status_code == 422, bad
            assert answer.json()["detail"][0]["loc"][:2] == ["body", next(iter(bad))]


# -- idempotency and keys -----------------------------------------------------------


def test_a_repeated_idempotency_key_returns_the_first_job(served: Served) -> None:
    key = str(uuid.uuid4())
    body = {"task": "wait_s", "args": [0.01]}
    with served.client("alice") as alice, served.client("bob") as bob:
        first = _start(alice, body, **{"Idempotency-Key": key})
        served.wait_for(alice, first.json()["id"])  # ended: still the same job for a day
        again = _start(alice, body, **{"Idempotency-Key": key})
        bobs = _start(bob, body, **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == bobs.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert bobs.json()["id"] != first.json()["id"], "another owner's key is another key"


def test_concurrent_requests_with_one_key_make_one_job(served: Served) -> None:
    key = str(uuid.uuid4())
    ids: list[str] = []

    def send() -> None:
        with served.client() as alice:
            answer = _start(alice, {"task": "wait_s", "args": [0.5]}, **{"Idempotency-Key": key})
            ids.append(answer.json()["id"])

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1, ids


def test_a_live_key_is_per_owner(served: Served) -> None:
    body = {"task": "wait_s", "args": [1.0], "key": f"report-{uuid.uuid4().hex[:6]}"}
    with served.client("alice") as alice, served.client("bob") as bob:
        first, second, bobs = _start(alice, body), _start(alice, body), _start(bob, body)
    assert first.json()["id"] == second.json()["id"]
    assert bobs.json()["id"] != first.json()["id"]
    assert first.json()["key"] is None  # stored under the owner's name; not shown as such


# -- only public tasks, with checked arguments --------------------------------------


def test_arguments_are_checked_against_the_type_hints_with_the_fields_path(
    served: Served,
) -> None:
    body = {"task": "resize", "args": ["a.png", [{"width": 1, "height": "tall"}]],
            "kwargs": {"quality": "best"}}  # fmt: skip
    with served.client() as alice:
        answer = _start(alice, body)
        missing = _start(alice, {"task": "resize", "args": []})
        extra = _start(alice, {"task": "wait_s", "args": [1, 2]})
    assert answer.status_code == 422
    assert [d["loc"] for d in answer.json()["detail"]] == [
        ["body", "args", 1, 0, "height"], ["body", "kwargs", "quality"]]  # fmt: skip
    assert "Expected `int`" in answer.json()["detail"][0]["msg"]
    assert missing.status_code == 422 and "missing a required argument" in str(missing.json())
    assert extra.status_code == 422 and "too many" in str(extra.json())


def test_only_public_tasks_can_be_started(served: Served) -> None:
    with served.client("alice", "admin") as admin:
        for task in ("internal", "no_such_task"):
            answer = _start(admin, {"task": task, "args": ["x"]})
            assert answer.status_code == 422
            assert answer.json()["detail"][0]["loc"] == ["body", "task"]
            assert "may be started over HTTP" in answer.json()["detail"][0]["msg"]


def test_bad_bodies_get_4xx_that_say_what_is_wrong(served: Served) -> None:
    with served.client() as alice:
        broken = alice.post("/api/v1/jobs", content=b'{"task": ',
                            headers={"Content-Type": "application/json"})  # fmt: skip
        wrong = alice.post("/api/v1/jobs", json=["resize"])
        huge = alice.post("/api/v1/jobs", json={"task": "wait_s", "args": ["x" * 2_000_000]})
        long_key = _start(alice, {"task": "wait_s", "args": [0]}, **{"Idempotency-Key": "k" * 201})
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"
    assert wrong.status_code == 422
    assert huge.status_code == 413 and "bytes" in huge.json()["detail"]
    assert long_key.status_code == 422
    assert long_key.json()["detail"][0]["loc"] == ["header", "idempotency-key"]


# -- lists and actions --------------------------------------------------------------


def test_lists_filter_search_and_page_with_a_cursor(served: Served) -> None:
    tag = uuid.uuid4().hex[:8]
    with served.client("bob") as bob:
        made = [_start(bob, {"task": "resize", "args": [f"{tag}-{i}.png", SIZES]}).json()["id"]
                for i in range(5)]  # fmt: skip
        seen, cursor = [], None
        while True:
            params = {"text": tag, "task": "resize", "limit": 2,
                      **({"cursor": cursor} if cursor else {})}  # fmt: skip
            page = bob.get("/api/v1/jobs", params=params).json()
            seen += [j["id"] for j in page["jobs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        by_task = bob.get("/api/v1/jobs", params={"task": "resize", "text": tag}).json()
        unknown = bob.get("/api/v1/jobs", params={"colour": "red"})
        bad_cursor = bob.get("/api/v1/jobs", params={"cursor": "garbage"})
        bad_state = bob.get("/api/v1/jobs", params={"state": "nope"})
        bad_time = bob.get("/api/v1/jobs", params={"created_after": "yesterday"})
    assert sorted(seen) == sorted(made) and len(seen) == 5
    assert len(by_task["jobs"]) == 5
    assert unknown.status_code == 400 and "unknown filter 'colour'" in unknown.json()["detail"]
    assert bad_cursor.status_code == 400 and "cursor" in bad_cursor.json()["detail"]
    assert bad_state.status_code == 400 and "unknown state" in bad_state.json()["detail"]
    assert bad_time.status_code == 422


def test_cancel_retry_and_delete_one_job(served: Served) -> None:
    with served.client() as alice:
        job_id = _start(alice, {"task": "wait_s", "args": [30]}).json()["id"]
        deadline = time.monotonic() + 30
        while alice.get(f"/api/v1/jobs/{job_id}").json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        refused = alice.delete(f"/api/v1/jobs/{job_id}")
        assert refused.status_code == 400 and "cancel it first" in refused.json()["detail"]
        assert alice.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
        assert served.wait_for(alice, job_id)["state"] == "cancelled"
        retried = alice.post(f"/api/v1/jobs/{job_id}/retry")
        assert retried.status_code == 200 and retried.json()["state"] in ("queued", "running")
        assert alice.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
        served.wait_for(alice, job_id)
        assert alice.delete(f"/api/v1/jobs/{job_id}").status_code == 204
        assert alice.get(f"/api/v1/jobs/{job_id}").status_code == 404


# -- live -----------------------------------------------------------------------------


def test_a_jobs_events_come_live_current_state_first_and_end_with_it(served: Served) -> None:
    with served.client() as alice:
        job_id = _start(alice, {"task": "resize", "args": ["live.png", SIZES * 4]}).json()["id"]
        with alice.stream("GET", f"/api/v1/jobs/{job_id}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = list(sse_events(response))  # the stream ends after the final state
    assert events[0]["data"]["current"] is True
    assert events[0]["data"]["job"] == job_id
    assert events[-1]["event"] == "succeeded" and events[-1]["data"]["state"] == "succeeded"
    assert all(e["data"]["job"] == job_id for e in events)
    assert all(e["id"] for e in events)


def test_a_reconnect_with_last_event_id_gets_the_state_and_no_older_change(
    served: Served,
) -> None:
    with served.client() as alice:
        job_id = _start(alice, {"task": "wait_s", "args": [0.01]}).json()["id"]
        served.wait_for(alice, job_id)
        with alice.stream("GET", f"/api/v1/jobs/{job_id}/events") as response:
            (first,) = list(sse_events(response))
        headers = {"Last-Event-ID": first["id"]}
        with alice.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=headers) as response:
            again = list(sse_events(response))
    assert first["event"] == "succeeded" and first["data"]["current"] is True
    assert [e["event"] for e in again] == ["succeeded"]


def test_the_events_of_an_owner_are_only_that_owners(served: Served) -> None:
    got: list[dict] = []
    listening = threading.Event()

    def listen() -> None:
        with served.client("alice") as alice, alice.stream("GET", "/api/v1/events") as response:
            listening.set()
            for event in sse_events(response):
                got.append(event)
                if event["event"] == "succeeded" and event["data"]["task"] == "resize":
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert listening.wait(30)
    time.sleep(0.5)  # the subscription reaches the store
    with served.client("bob") as bob, served.client("alice") as alice:
        bobs = _start(bob, {"task": "wait_s", "args": [0.01]}).json()["id"]
        served.wait_for(bob, bobs)
        alices = _start(alice, {"task": "resize", "args": ["mine.png", SIZES]}).json()["id"]
    listener.join(30)
    assert not listener.is_alive(), [e["event"] for e in got]
    assert {e["data"]["owner"] for e in got} == {"alice"}
    assert alices in {e["data"]["job"] for e in got}


# -- who may do what ------------------------------------------------------------------


def test_owners_are_isolated_and_roles_hold(served: Served) -> None:
    with served.client("alice") as alice:
        job_id = _start(alice, {"task": "wait_s", "args": [0.01]}).json()["id"]
        served.wait_for(alice, job_id)
    routes = [
        ("GET", f"/api/v1/jobs/{job_id}"), ("GET", f"/api/v1/jobs/{job_id}/events"),
        ("POST", f"/api/v1/jobs/{job_id}/retry"), ("POST", f"/api/v1/jobs/{job_id}/cancel"),
    ]  # fmt: skip
    with served.client(None) as nobody:
        for method, path in [*routes, ("GET", "/api/v1/jobs"), ("POST", "/api/v1/jobs"),
                             ("GET", "/metrics")]:  # fmt: skip
            answer = nobody.request(method, path)
            assert answer.status_code == 401, (method, path)
            assert answer.headers["WWW-Authenticate"] == "Bearer"
    with served.client("bob") as bob, served.client("bob", "viewer") as viewer:
        for method, path in routes:
            answer = bob.request(method, path)
            assert answer.status_code == 404, (method, path)
            assert (
                answer.json()["detail"] == f"no job with id {job_id!r} (it may have been "
                "pruned after its retention)"
            )
        assert bob.delete(f"/api/v1/jobs/{job_id}").status_code == 404
        assert bob.get("/api/v1/jobs", params={"owner": "alice"}).json()["jobs"] == []
        assert viewer.get(f"/api/v1/jobs/{job_id}").status_code == 404
    with served.client("alice", "viewer") as viewer:
        assert viewer.get(f"/api/v1/jobs/{job_id}").status_code == 200
        for method, path in [*routes[2:], ("POST", "/api/v1/jobs")]:
            answer = viewer.request(method, path, json={"task": "wait_s", "args": [0]})
            assert answer.status_code == 403, (method, path)
            assert "viewer token cannot" in answer.json()["detail"]
    for role in ("admin", "operator"):
        with served.client("bob", role) as staff:
            assert staff.get(f"/api/v1/jobs/{job_id}").status_code == 200, role
            listed = staff.get("/api/v1/jobs", params={"owner": "alice", "limit": 500}).json()
            assert job_id in {j["id"] for j in listed["jobs"]}, role


def test_a_revoked_token_stops_working(served: Served) -> None:
    from offload import Offload

    app = Offload(served.store_url)
    try:
        made = app.admin.create_token(owner="carol", role="submitter")
        headers = {"Authorization": f"Bearer {made.token}"}
        assert httpx.get(f"{served.url}/api/v1/jobs", headers=headers).status_code == 200
        app.admin.revoke_token(made.info.id)
    finally:
        app.close()
    assert httpx.get(f"{served.url}/api/v1/jobs", headers=headers).status_code == 401


def test_health_and_openapi(served: Served) -> None:
    assert httpx.get(f"{served.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{served.url}/readyz").json() == {"status": "ok"}
    spec = httpx.get(f"{served.url}/openapi.json").json()
    assert "/api/v1/jobs" in spec["paths"] and "/api/v1/jobs/{job_id}/events" in spec["paths"]


def test_guessing_tokens_is_slowed_down(served: Served) -> None:
    """Last: it locks this client address out for a minute."""
    answers = [
        httpx.get(f"{served.url}/api/v1/jobs", headers={"Authorization": f"Bearer off_x_{i}"})
        for i in range(25)
    ]
    codes = [a.status_code for a in answers]
    refused = codes.index(429)  # 20 failures a minute, the revoked token's included
    assert 15 <= refused <= 20 and set(codes[:refused]) == {401}, codes
    assert set(codes[refused:]) == {429}
    assert int(answers[-1].headers["Retry-After"]) >= 1
    admin = {"Authorization": f"Bearer {served.tokens[('alice', 'admin')]}"}
    good = httpx.get(f"{served.url}/api/v1/jobs", headers=admin)
    assert good.status_code == 200, "a valid token passes from an address others abuse"


def test_serving_without_auth_warns(tmp_path: Path) -> None:
    with socket.socket() as taken:  # the server then stops at once, after its warning
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            offload_command("serve", "web_app:app", "--insecure-no-auth", "--port", str(port)),
            env=env_for(f"sqlite:///{tmp_path}/x.db"), capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
    assert "WARNING: serving without authentication" in done.stderr
    assert done.returncode != 0


def test_a_client_that_goes_away_frees_its_subscription(served: Served) -> None:
    """On PostgreSQL a subscriber holds a connection and a lock that says someone
    listens: both go once the browser does."""
    if not served.store_url.startswith("postgresql"):
        pytest.skip("counted through PostgreSQL's own views")
    import psycopg

    def listeners() -> int:
        with psycopg.connect(served.store_url.split("?")[0], autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock'"
            ).fetchone()
            return int(row[0]) if row else 0

    before = listeners()
    with served.client("alice", "admin") as admin:
        with admin.stream("GET", "/api/v1/events") as response:
            assert response.status_code == 200
            deadline = time.monotonic() + 30
            while listeners() <= before:
                assert time.monotonic() < deadline, "the stream never subscribed"
                time.sleep(0.1)
    deadline = time.monotonic() + 30
    while listeners() > before:
        assert time.monotonic() < deadline, "the subscription outlived its client"
        time.sleep(0.1)


def test_every_route_wants_a_token_but_health_and_signed_links(served: Served) -> None:
    spec = httpx.get(f"{served.url}/openapi.json").json()
    open_routes = {"/healthz", "/readyz", "/api/v1/files/{token}", "/api/v1/shared/{token}"}
    checked = 0
    with served.client(None) as nobody, served.client("bob", "viewer") as viewer:
        for path, methods in spec["paths"].items():
            concrete = path.replace("{job_id}", "01a23c19-828a-7000-8307-6da64bb3c101")
            for name in ("batch_id", "name", "token"):
                concrete = concrete.replace("{" + name + "}", "x")
            for method in methods:
                answer = nobody.request(method.upper(), concrete, json={})
                if path in open_routes:
                    assert answer.status_code != 401, (method, path)
                    continue
                assert answer.status_code == 401, (method, path, answer.status_code)
                acting = method != "get"
                if acting:  # a viewer changes nothing, wherever it asks
                    assert viewer.request(method.upper(), concrete, json={}).status_code in (
                        403, 422), (method, path)  # fmt: skip
                checked += 1
    assert checked >= 20


def test_a_job_started_over_http_can_ask_for_a_webhook(served: Served) -> None:
    with served.client() as alice:
        bad = _start(alice, {"task": "wait_s", "args": [0], "notify": [{"webhook": "ftp://x"}]})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == [
            "body", "notify", 0, "webhook"]  # fmt: skip
        for odd in ({"email": "not-an-address"}, {"email": "a@example.com", "webhook": "https://x"},
                    {"on": "end"}, {"sms": "+33600000000"}):  # fmt: skip
            answer = _start(alice, {"task": "wait_s", "args": [0], "notify": [odd]})
            assert answer.status_code == 422, odd
        body = {"task": "wait_s", "args": [0], "notify": [{"webhook": "http://10.1.2.3/h"}]}
        job_id = _start(alice, body).json()["id"]
        served.wait_for(alice, job_id)
        deadline = time.monotonic() + 30
        while True:  # the notice is the job's follow-up; a private address is refused
            notices = alice.get("/api/v1/jobs", params={"task": "offload.notify"}).json()["jobs"]
            if notices and notices[0]["state"] == "dead":
                break
            assert time.monotonic() < deadline, notices
            time.sleep(0.1)
    assert notices[0]["args"][0] == job_id and notices[0]["owner"] == "alice"
    assert "may not reach" in notices[0]["error"]["message"]


def test_secret_arguments_and_results_are_redacted(served: Served) -> None:
    with served.client() as alice:
        body = {"task": "call_api", "args": ["https://api.example.com"],
                "kwargs": {"api_key": "sk-live-123"}}  # fmt: skip
        started = _start(alice, body).json()
        done = served.wait_for(alice, started["id"])
        listed = alice.get("/api/v1/jobs", params={"task": "call_api"}).json()["jobs"]
        link = alice.post(f"/api/v1/jobs/{started['id']}/link").json()["url"]
    for shown in (started, done, listed[0]):
        assert shown["kwargs"] == {"api_key": "[redacted]"}
        assert shown["args"] == ["https://api.example.com"]
        assert "sk-live-123" not in str(shown)
    assert done["result"] == "[redacted]" and done["state"] == "succeeded"
    assert httpx.get(f"{served.url}{link}").json()["result"] == "[redacted]"
    from offload import Offload

    app = Offload(served.store_url)
    try:  # the task itself got the key whole
        assert app.admin.get(started["id"]).result == b'"session-for-sk-live-123"'
    finally:
        app.close()


def test_a_secret_parameter_must_exist() -> None:
    from offload import Offload
    from offload.errors import ConfigurationError

    app = Offload("memory://")
    with pytest.raises(ConfigurationError, match="secret= names no parameter"):

        @app.task(secret=("pasword",))
        def login(user: str, password: str) -> None: ...


def test_text_search_cannot_spell_out_secret_arguments(served: Served) -> None:
    """A task with secret arguments is found by its id, name or owner, never by what its
    arguments hold: a search cannot guess a key one character at a time."""
    with served.client("alice", "admin") as admin:
        kept = _start(admin, {"task": "call_api", "args": ["https://api.example/", "sk_live_42"]})
        job_id = kept.json()["id"]
        for path in ("/api/v1/jobs", "/api/v1/jobs/count"):
            for params in ({"text": "sk_live"}, {"text": "sk_live", "task": "call_api"}):
                answer = admin.get(path, params=params)
                assert answer.status_code == 200, (path, params)
                found = answer.json()
                assert found == {"count": 0} or job_id not in {j["id"] for j in found["jobs"]}
        listed = admin.get("/api/v1/jobs", params={"text": "call_ap"}).json()["jobs"]
        assert job_id in {j["id"] for j in listed}  # by its task's name, yes
        bulk = {"filter": {"text": "sk_live"}, "expected": 0}
        assert admin.post("/api/v1/jobs/cancel", json=bulk).json() == {"count": 0}
        served.wait_for(admin, job_id)


def test_odd_input_gets_4xx_not_5xx(served: Served) -> None:
    with served.client("alice") as alice:
        surrogate = b'{"task": "' + b"\\ud800" * 300 + b'"}'
        answer = alice.post("/api/v1/jobs", content=surrogate,
                            headers={"Content-Type": "application/json"})  # fmt: skip
        assert answer.status_code == 422
        job_id = _start(alice, {"task": "wait_s", "args": [0]}).json()["id"]
        served.wait_for(alice, job_id)
        with alice.stream("GET", f"/api/v1/jobs/{job_id}/events",
                          headers={"Last-Event-ID": b"\xb2"}) as response:  # fmt: skip
            assert response.status_code == 200
            assert [e["event"] for e in sse_events(response)] == ["succeeded"]
        long_name = "%C3%A9" * 200
        assert alice.get(f"/api/v1/jobs/{job_id}/files/{long_name}").status_code in (404, 422)


def test_event_streams_are_rationed_per_caller(served: Served) -> None:
    import contextlib

    with contextlib.ExitStack() as stack:
        client = stack.enter_context(served.client("bob", "viewer"))
        opened = []
        for _ in range(10):
            response = stack.enter_context(client.stream("GET", "/api/v1/events"))
            opened.append(response.status_code)
        refused = client.get("/api/v1/events")
    assert opened == [200] * 10
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    with served.client("bob", "viewer") as client, client.stream("GET", "/api/v1/events") as again:
        assert again.status_code == 200, "closed streams are given back"
