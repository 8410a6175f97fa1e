"""PostgreSQL behind a network that goes silent: no byte forwarded, no socket closed.

The fault suite's proxy (tests/faults/proxy.py) sits between offload and the test's
PostgreSQL. The flows it cuts stay dead after it heals, as after a real partition: a
client recovers only by noticing (a deadline) and opening new connections. The URLs give
short deadlines (``timeout_s``) so the tests are quick; the waits only guard against hangs.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from offload import JobState, Offload
from offload.backends.base import BackendError, ClaimParams, IdsParams
from offload.backends.postgres import PostgresBackend
from worker_helpers import WorkerThread, wait_until

_spec = importlib.util.spec_from_file_location(
    "fault_proxy", Path(__file__).parent / "faults" / "proxy.py"
)
assert _spec is not None and _spec.loader is not None
fault_proxy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fault_proxy)

HANG_S = 60.0  # far past every deadline below: reaching it means a hang


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[Any]:
    p = fault_proxy.SilentProxy(urlsplit(postgres_url).port).start()
    yield p
    p.close()


def _through(proxy: Any, url: str, timeout_s: float) -> str:
    port = urlsplit(url).port
    return url.replace(f":{port}/", f":{proxy.port}/", 1) + f"&timeout_s={timeout_s}"


def echo(n: int) -> int:
    return n


def _app(url: str) -> Offload:
    app = Offload(url, default_retries=0)
    app.task(name="echo")(echo)
    return app


def _in_thread(call: Callable[[], object]) -> BaseException | object:
    """``call``'s result or exception; a hang fails the test instead of hanging it."""
    out: list[object] = []

    def main() -> None:
        try:
            out.append(call())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    thread.join(HANG_S)
    assert out, f"the call still hangs after {HANG_S:.0f}s"
    return out[0]


def test_an_idle_worker_whose_connections_died_silently_claims_a_new_job(
    postgres_url: str, proxy: Any
) -> None:
    app, direct = _app(_through(proxy, postgres_url, 2.0)), _app(postgres_url)
    with WorkerThread(app, concurrency=2) as worker:
        first = direct.tasks["echo"].enqueue(1)
        wait_until(lambda: first.state is JobState.SUCCEEDED, HANG_S, "the first job")
        time.sleep(0.5)  # idle: asleep on LISTEN, its pool's connections open and idle
        proxy.partition()  # every flow goes silent; none is closed
        job = direct.tasks["echo"].enqueue(2)  # its NOTIFY is swallowed
        time.sleep(1.0)
        proxy.heal()  # new connections pass again; the cut ones stay dead
        wait_until(
            lambda: job.state is JobState.SUCCEEDED,
            HANG_S,
            "the job queued during the silent partition to be claimed and run",
        )
        worker.stop()
    app.close()
    direct.close()


@pytest.mark.parametrize("kind", ["blocking", "async"])
def test_a_call_during_a_silent_partition_fails_with_backend_error_then_recovers(
    postgres_url: str, proxy: Any, kind: str
) -> None:
    app = _app(_through(proxy, postgres_url, 1.0))
    backend = app.backend
    assert isinstance(backend, PostgresBackend)
    job = app.tasks["echo"].enqueue(1)
    params = ClaimParams(queues=["default"], limit=1, worker="w", lease_s=30)
    with asyncio.Runner() as runner:

        def call() -> object:
            if kind == "blocking":
                return backend.blocking.get(IdsParams(ids=[job.id]))
            return runner.run(backend.claim(params))

        try:
            assert call()  # connections open (and, async, the job claimed)
            proxy.partition()
            failed = _in_thread(call)
            assert isinstance(failed, BackendError), failed
            proxy.heal()
            again = _in_thread(call)
            assert not isinstance(again, BaseException), again  # new connections
        finally:
            proxy.heal()
            runner.run(backend.close())
