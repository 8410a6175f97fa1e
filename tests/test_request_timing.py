"""The one-minute rule: real ASGI (FastAPI under uvicorn) and WSGI (wsgiref) servers, timed
by ``offload.requests`` with a 0.2 s threshold, their counts read back from the store, from
``/metrics`` and from ``offload requests``. Nothing here asserts on timing beyond "slept
past 0.2 s counts as over"; waits are polls with a deadline that only guards against hangs.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.util import setup_testing_defaults

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

from offload import Offload
from offload.admin.totals import fold
from offload.ops import run_sync
from offload.requests import RequestStats, RequestTimer, RequestTimingASGI, RequestTimingWSGI
from offload.web import create_app

T = TypeVar("T")
THRESHOLD_S = 0.2
SLEEP_S = 0.3  # past the threshold
DEADLINE_S = 30.0  # guards against hangs, never a timing assertion


def _at_once(*calls: Callable[[], T]) -> list[T]:
    """The calls' answers, made at once (their sleeps overlap: the suite stays fast)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def _stats(app: Offload, name: str) -> RequestStats:
    found = app.admin.requests(since=app.store_now() - 3600, app=name)
    assert len(found) == 1, found
    return found[0]


# -- a FastAPI application under uvicorn ------------------------------------------------
def _fastapi() -> FastAPI:
    api = FastAPI()

    @api.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @api.get("/slow/{seconds}")
    async def slow(seconds: float) -> dict[str, float]:
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    @api.get("/stream")
    async def stream() -> StreamingResponse:  # answers at once, its body takes SLEEP_S
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(3):
                await asyncio.sleep(SLEEP_S / 3)
                yield b"chunk\n"

        return StreamingResponse(chunks())

    @api.get("/events")
    async def events() -> StreamingResponse:  # a subscription, not a request: left out
        async def chunks() -> AsyncIterator[str]:
            for _ in range(3):
                await asyncio.sleep(SLEEP_S / 3)
                yield "data: tick\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    @api.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    return api


@contextmanager
def _uvicorn(asgi: Any) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=0, lifespan="on",
                                           log_level="critical"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + DEADLINE_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True  # the lifespan's shutdown writes the last counts
        thread.join(DEADLINE_S)


def test_asgi_requests_are_counted_in_the_store(store_url: str) -> None:
    app = Offload(store_url)
    timed = RequestTimingASGI(_fastapi(), app, name="shop", threshold_s=THRESHOLD_S)
    with _uvicorn(timed) as url, httpx.Client(base_url=url, timeout=DEADLINE_S) as client:

        def events() -> httpx.Response:
            with client.stream("GET", "/events") as response:
                response.read()
                return response

        answers = _at_once(
            lambda: client.get("/items/7?secret=1"), lambda: client.get(f"/slow/{SLEEP_S}"),
            lambda: client.get("/stream"), events, lambda: client.get("/boom"),
        )  # fmt: skip
    assert answers[0].json() == {"id": 7} and answers[1].status_code == 200
    assert answers[2].text == "chunk\n" * 3
    assert answers[3].headers["content-type"].startswith("text/event-stream")
    assert answers[3].text.count("data: tick") == 3
    assert answers[4].status_code == 500  # counted, and uvicorn saw it raise
    stats = _stats(app, "shop")
    assert stats.requests == 4, "the event stream is left out"
    assert stats.over_threshold >= 2  # the slow one and the stream (nothing else is timed)
    assert stats.slowest is not None and stats.slowest.method == "GET"
    assert stats.slowest.path in ("/slow/{seconds}", "/stream")  # route templates, no query
    assert stats.slowest.threshold_s == THRESHOLD_S
    assert stats.max_ms == stats.slowest.duration_ms > THRESHOLD_S * 1000
    assert app.admin.counts(since=app.store_now() - 3600) == [], "requests are not jobs"
    app.close()


def test_an_asgi_exception_propagates_and_is_counted(tmp_path: Path) -> None:
    app = Offload(f"sqlite:///{tmp_path}/jobs.db")
    timed = RequestTimingASGI(_fastapi(), app, name="shop", threshold_s=THRESHOLD_S)

    async def call() -> None:
        transport = httpx.ASGITransport(app=timed)  # raises what the application raised
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            with pytest.raises(RuntimeError, match="boom"):
                await client.get("/boom")

    asyncio.run(call())
    assert timed.close()
    assert _stats(app, "shop").requests == 1
    app.close()


# -- a WSGI application under wsgiref -----------------------------------------------------
def _wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise RuntimeError("boom")
    if path == "/slow":
        time.sleep(SLEEP_S)
    if path in ("/stream", "/events"):
        kind = "text/event-stream" if path == "/events" else "text/plain"
        start_response("200 OK", [("Content-Type", kind)])
        return _slowly(b"data: tick\n\n" if path == "/events" else b"chunk\n")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


PATHS = ("/fast?q=1", "/slow", "/stream", "/events", "/boom")


def _slowly(chunk: bytes) -> Iterator[bytes]:
    for _ in range(3):
        time.sleep(SLEEP_S / 3)
        yield chunk


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


@contextmanager
def _wsgiref(wsgi: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, wsgi, _ThreadingServer, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_wsgi_requests_are_counted_in_the_store_in_the_background(store_url: str) -> None:
    app = Offload(store_url)
    timed = RequestTimingWSGI(_wsgi, app, name="shop", threshold_s=THRESHOLD_S,
                              flush_every_s=0.05)  # fmt: skip
    with _wsgiref(timed) as url, httpx.Client(base_url=url, timeout=DEADLINE_S) as client:
        answers = _at_once(*(functools.partial(client.get, path) for path in PATHS))
        assert [a.text for a in answers[:3]] == ["ok", "ok", "chunk\n" * 3]
        assert answers[3].headers["content-type"] == "text/event-stream"
        assert answers[4].status_code == 500
        deadline = time.monotonic() + DEADLINE_S  # the writer thread, not close(), wrote them
        while not (found := app.admin.requests(since=app.store_now() - 3600)) or (
            found[0].requests < 4
        ):
            assert time.monotonic() < deadline, found
            time.sleep(0.05)
    environ: dict[str, Any] = {"PATH_INFO": "/boom"}
    setup_testing_defaults(environ)
    with pytest.raises(RuntimeError, match="boom"):  # the application's error is its caller's
        timed(environ, lambda status, headers, exc_info=None: lambda data: None)
    assert timed.close()
    stats = _stats(app, "shop")
    assert stats.requests == 5 and stats.over_threshold >= 2
    assert stats.slowest is not None and stats.slowest.path in ("/slow", "/stream")
    app.close()


def test_a_failing_store_breaks_no_request_and_loses_no_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "not-yet"  # SQLite cannot open a file in a missing folder
    app = Offload(f"sqlite:///{folder}/jobs.db")
    timed = RequestTimingWSGI(_wsgi, app, name="shop", threshold_s=THRESHOLD_S,
                              flush_every_s=0.05)  # fmt: skip
    with caplog.at_level(logging.WARNING, "offload.requests"):
        with _wsgiref(timed) as url, httpx.Client(base_url=url, timeout=DEADLINE_S) as client:
            for _ in range(3):
                assert client.get("/fast").text == "ok"
            deadline = time.monotonic() + DEADLINE_S
            while "cannot write the request counts" not in caplog.text:
                assert time.monotonic() < deadline, "the writer never tried"
                time.sleep(0.05)
        assert not timed.close(), "the store is still missing"
    folder.mkdir()  # the store comes back: the kept counts are written
    assert timed.close()
    assert _stats(app, "shop").requests == 3
    app.close()


# -- reading them back: /metrics, every process adding up, the CLI -------------------------
def _samples(text: str) -> dict[str, float]:
    return {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def _noop() -> None:
    pass


def test_metrics_add_up_every_process_and_leave_out_the_apis_event_streams(
    tmp_path: Path,
) -> None:
    app = Offload(f"sqlite:///{tmp_path}/jobs.db")
    noop = app.task(name="noop")(_noop)
    run_sync(app.backend.blocking, fold())  # counting starts, as a worker's leader does
    for seconds in (0.01, SLEEP_S):  # two processes of one app: one source each
        timer = RequestTimer(app, name="shop", threshold_s=THRESHOLD_S)
        timer.started_sync()
        timer.record(seconds, "POST", "/orders/{order_id}")
        assert timer.close()
    job = noop.enqueue()
    app.admin.cancel(job.id)
    with TestClient(create_app(app, auth=False)) as api:  # offload serve times itself ("api")
        for _ in range(3):
            assert api.get("/healthz").status_code == 200
        with api.stream("GET", f"/api/v1/jobs/{job.id}/events") as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            assert b"cancelled" in events.read()
    with TestClient(create_app(app, auth=False)) as api:
        text = api.get("/metrics").text
    samples = _samples(text)
    assert samples['offload_http_requests_total{app="shop"}'] == 2
    assert samples['offload_http_requests_over_threshold_total{app="shop"}'] == 1
    assert samples['offload_http_request_duration_seconds_count{app="shop"}'] == 2
    assert samples['offload_http_request_duration_seconds_bucket{app="shop",le="0.2"}'] == 1
    assert samples['offload_http_requests_total{app="api"}'] == 3, "the event stream is left out"
    assert 'offload_http_requests_over_threshold_total{app="api"}' in samples
    assert "# TYPE offload_http_request_duration_seconds histogram" in text
    assert "offload.http" not in text, "requests are not jobs"
    shop = _stats(app, "shop")
    assert shop.slowest is not None and shop.slowest.duration_ms == SLEEP_S * 1000
    assert (shop.slowest.method, shop.slowest.path) == ("POST", "/orders/{order_id}")
    app.close()


def test_the_cli_reports_the_rule_per_app(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    app = Offload(url)
    for name, seconds in (("shop", SLEEP_S), ("admin", 0.01)):
        timer = RequestTimer(app, name=name, threshold_s=THRESHOLD_S)
        timer.started_sync()
        timer.record(seconds, "GET", f"/{name}/{{page}}")
        assert timer.close()
    app.close()
    env = {k: v for k, v in os.environ.items() if k not in ("OFFLOAD_URL", "COLUMNS")}

    def offload(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "offload", "requests", "--url", url, *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, check=False,
                              timeout=DEADLINE_S)  # fmt: skip

    table = offload("--since", "1h")
    assert table.returncode == 0, table.stderr
    lines = {line.split()[0]: line for line in table.stdout.splitlines()[1:]}
    assert lines["shop"].split()[1:3] == ["1", "1"] and "GET /shop/{page}" in lines["shop"]
    assert lines["admin"].split()[1:3] == ["1", "0"]
    checked = offload("--json", "--check", "--since", "15m")
    assert checked.returncode == 1, "a request over its threshold fails --check"
    report = {r["app"]: r for r in json.loads(checked.stdout)}
    assert report["shop"]["over_threshold"] == 1 and report["admin"]["over_threshold"] == 0
    assert report["shop"]["max_ms"] == SLEEP_S * 1000
    assert report["shop"]["slowest"]["path"] == "/shop/{page}"
    assert offload("--json", "--check", "--name", "admin").returncode == 0
