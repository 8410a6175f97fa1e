"""The HTTP API's batches, bulk actions, queues, workers and schedules, against a real
server and worker on each store; who may do what."""

from __future__ import annotations

import time
import uuid

from web_helpers import Served, served, sse_events, start_job

__all__ = ["served"]


def _running(served: Served, client, job_id: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while client.get(f"/api/v1/jobs/{job_id}").json()["state"] != "running":
        assert time.monotonic() < deadline, "never started"
        time.sleep(0.05)


def test_a_batch_starts_at_once_and_its_callback_gets_every_outcome(served: Served) -> None:
    body = {
        "jobs": [{"task": "wait_s", "args": [0.05]}, {"task": "fail", "args": ["broken"]},
                 {"task": "wait_s", "args": [0.1], "priority": 3}],
        "on_complete": {"task": "collect", "kwargs": {"label": "nightly"}},
    }  # fmt: skip
    with served.client("alice") as alice, served.client("bob") as bob:
        answer = alice.post("/api/v1/batches", json=body)
        assert answer.status_code == 202, answer.text
        batch = answer.json()
        assert answer.headers["Location"] == f"/api/v1/batches/{batch['id']}"
        assert batch["total"] == 3 and len(batch["jobs"]) == 3
        with alice.stream("GET", f"/api/v1/events?batch={batch['id']}") as response:
            for event in sse_events(response):
                if event["event"] == "batch_progress" and event["data"]["progress"] == 1.0:
                    break
        deadline = time.monotonic() + 30
        while not (status := alice.get(f"/api/v1/batches/{batch['id']}").json())["finished"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert status["done"] == 3 and status["counts"] == {"succeeded": 2, "dead": 1}
        listed = alice.get("/api/v1/jobs", params={"task": "collect"}).json()["jobs"]
        callback = [
            j for j in listed if j["args"][1:] == [] and j["kwargs"] == {"label": "nightly"}
        ]
        assert callback, listed
        done = served.wait_for(alice, callback[0]["id"])
        assert done["result"] == {"label": "nightly", "states": ["dead", "succeeded", "succeeded"]}
        assert done["owner"] == "alice"
        assert bob.get(f"/api/v1/batches/{batch['id']}").status_code == 404
        with bob.stream("GET", f"/api/v1/events?batch={batch['id']}") as response:
            assert response.status_code == 404


def test_a_batch_is_checked_whole_before_anything_is_stored(served: Served) -> None:
    tag = uuid.uuid4().hex[:8]
    cases = [
        ({"jobs": [{"task": "wait_s", "args": [tag]}]}, ["body", "jobs", 0, "args", 0]),
        ({"jobs": [{"task": "wait_s", "args": [1]}, {"task": "internal", "args": [tag]}]},
         ["body", "jobs", 1, "task"]),
        ({"jobs": [{"task": "wait_s", "args": [1]}],
          "on_complete": {"task": "collect", "args": [5]}}, ["body", "on_complete", "args", 0]),
        ({"jobs": [{"task": "wait_s", "args": [1], "key": tag}]}, ["body", "jobs", 0, "key"]),
        ({"jobs": []}, ["body", "jobs"]),
    ]  # fmt: skip
    with served.client("alice") as alice:
        before = alice.get("/api/v1/jobs/count").json()["count"]
        for body, loc in cases:
            answer = alice.post("/api/v1/batches", json=body)
            assert answer.status_code == 422, body
            assert answer.json()["detail"][0]["loc"] == loc, answer.json()
        assert alice.get("/api/v1/jobs/count").json()["count"] == before


def test_bulk_actions_need_the_count_the_client_saw(served: Served) -> None:
    tag = uuid.uuid4().hex[:8]
    with served.client("bob") as bob, served.client("alice") as alice:
        for i in range(3):
            start_job(bob, {"task": "wait_s", "args": [60], "delay": 3600, "key": f"{tag}{i}"})
        start_job(alice, {"task": "wait_s", "args": [60], "delay": 3600})
        params = {"state": "scheduled", "task": "wait_s", "action": "cancel"}
        seen = bob.get("/api/v1/jobs/count", params=params).json()["count"]
        assert seen >= 3
        start_job(bob, {"task": "wait_s", "args": [60], "delay": 3600})  # the filter grew
        body = {"filter": {"state": ["scheduled"], "task": "wait_s"}, "expected": seen}
        refused = bob.post("/api/v1/jobs/cancel", json=body)
        assert refused.status_code == 409, refused.text
        body["expected"] = seen + 1
        done = bob.post("/api/v1/jobs/cancel", json=body)
        assert done.status_code == 200 and done.json() == {"count": seen + 1}
        assert alice.get("/api/v1/jobs/count", params={"state": "scheduled"}).json()["count"] >= 1
        everything = bob.post("/api/v1/jobs/delete", json={"filter": {}, "expected": 10**6})
        assert everything.status_code == 400 and "everything" in everything.json()["detail"]
        cancelled = {"state": ["cancelled"], "task": "wait_s"}
        retried = bob.post("/api/v1/jobs/retry", json={"filter": cancelled, "expected": seen + 1})
        assert retried.json() == {"count": seen + 1}
        bad = bob.post("/api/v1/jobs/cancel", json={"filter": {"colour": "red"}, "expected": 1})
        assert bad.status_code == 422
        unknown = bob.get("/api/v1/jobs/count", params={"colour": "red"})
        assert unknown.status_code == 400
    with served.client("bob", "viewer") as viewer:
        body = {"filter": {"state": ["queued"]}, "expected": 0}
        assert viewer.post("/api/v1/jobs/cancel", json=body).status_code == 403


def test_queues_pause_and_resume_for_staff_only(served: Served) -> None:
    with served.client("alice", "operator") as operator, served.client("alice") as alice:
        assert alice.get("/api/v1/queues").status_code == 403
        assert alice.post("/api/v1/queues/default/pause").status_code == 403
        paused = operator.post("/api/v1/queues/default/pause")
        assert paused.status_code == 200 and paused.json()["paused"] is True
        try:
            queues = {q["name"]: q for q in operator.get("/api/v1/queues").json()}
            assert queues["default"]["paused"] is True
            time.sleep(1.5)  # workers hear of the pause within about a second
            job_id = start_job(alice, {"task": "wait_s", "args": [0]}).json()["id"]
            time.sleep(1.0)
            assert alice.get(f"/api/v1/jobs/{job_id}").json()["state"] == "queued"
        finally:
            assert operator.post("/api/v1/queues/default/resume").json()["paused"] is False
        assert served.wait_for(alice, job_id)["state"] == "succeeded"
    with served.client("alice", "viewer") as viewer:
        assert viewer.post("/api/v1/queues/default/pause").status_code == 403


def test_workers_and_schedules_for_staff_only(served: Served) -> None:
    with served.client("bob", "admin") as admin, served.client("bob") as bob:
        job_id = start_job(bob, {"task": "wait_s", "args": [60]}).json()["id"]
        _running(served, bob, job_id)
        deadline = time.monotonic() + 30  # the registry learns at the worker's next beat
        while job_id not in (worker := admin.get("/api/v1/workers").json()[0])["running"]:
            assert time.monotonic() < deadline, worker
            time.sleep(0.2)
        assert worker["concurrency"] == 20 and worker["queues"] == ["default"]
        (schedule,) = admin.get("/api/v1/schedules").json()
        assert schedule["name"] == "nightly_cleanup" and schedule["next_run"]
        assert bob.get("/api/v1/workers").status_code == 403
        assert bob.get("/api/v1/schedules").status_code == 403
        assert bob.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_come_from_the_store_in_prometheus_text(served: Served) -> None:
    with served.client("bob", "operator") as operator, served.client("bob") as bob:
        ids = [start_job(bob, {"task": "wait_s", "args": [0.01]}).json()["id"] for _ in range(3)]
        for job_id in ids:
            served.wait_for(bob, job_id)
        deadline = time.monotonic() + 60  # workers flush their counts every 10 s
        while True:
            answer = operator.get("/metrics")
            samples = _samples(answer.text)
            ended = 'offload_jobs_ended_total{queue="default",task="wait_s",outcome="succeeded"}'
            if samples.get(ended, 0) >= 3:
                break
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.5)
        assert bob.get("/metrics").status_code == 403
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert samples["offload_workers"] == 1
    assert "# TYPE offload_job_run_seconds histogram" in answer.text
    where = 'queue="default",task="wait_s"'
    buckets = [v for k, v in samples.items()
               if k.startswith(f"offload_job_run_seconds_bucket{{{where}")]  # fmt: skip
    assert buckets == sorted(buckets), "cumulative"
    assert buckets[-1] == samples[f"offload_job_run_seconds_count{{{where}}}"] >= 3
    assert samples['offload_jobs{queue="default",state="succeeded"}'] >= 3
    assert all("job" not in k.split("{")[-1] for k in samples), "no job ids in labels"
