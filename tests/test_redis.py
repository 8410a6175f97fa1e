"""What only Redis does: refusing a server that may evict jobs, clear errors for a bad or
unreachable URL, key prefixes and database numbers, and surviving a SIGKILLed server.

Every test starts its own ``redis-server`` (``tests/servers.py``) or uses the session's
shared one with a fresh key prefix; none touches a Redis already running on the machine.
Waits are polls with generous deadlines that only guard against hangs, never timing
assertions.
"""

from __future__ import annotations

import asyncio
import collections
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import redis_app
from offload import Job, JobState, Offload
from offload.backends.base import BackendError, QueryParams
from offload.backends.redis import redis_backend
from servers import RedisServer, free_port
from test_cli import assert_one_line_error, base_env
from worker_helpers import WorkerThread, wait_until

#: Guards against a hung subprocess or server; never a timing assertion.
DEADLINE_S = 60.0


def offload_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m offload ARGS`` with the test apps importable and no stray $OFFLOAD_URL."""
    return subprocess.run(
        [sys.executable, "-m", "offload", *args],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )


def client(server: RedisServer, db: int = 0) -> redis.Redis:
    """A plain client for looking at the server from outside offload."""
    return redis.Redis(host="127.0.0.1", port=server.port, db=db)


@pytest.fixture
def evicting_server() -> Iterator[RedisServer]:
    """A server that may drop keys under memory pressure: jobs could vanish from it."""
    server = RedisServer("--maxmemory-policy", "allkeys-lru").start()
    try:
        yield server
    finally:
        server.destroy()


def unreachable_url() -> str:
    """A URL on a free local port: nothing listens there, so connecting is refused at once."""
    return f"redis://127.0.0.1:{free_port()}/0?prefix=nowhere"


# -- the test server itself -------------------------------------------------------


def test_the_test_server_keeps_its_data_across_a_sigkill() -> None:
    server = RedisServer("--appendonly", "yes", "--appendfsync", "always").start()
    try:
        port = server.port
        client(server).set("survives", "yes")
        assert server.aof_files(), "no append-only file was written"
        server.kill()
        assert not server.ping()
        server.start()
        assert server.port == port
        assert client(server).get("survives") == b"yes"
        assert client(server).config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    finally:
        server.destroy()
    assert not server.root.exists()


# -- a server that may evict jobs is refused ----------------------------------------


def test_a_server_that_may_evict_jobs_is_refused_with_the_fix(
    evicting_server: RedisServer,
) -> None:
    url = evicting_server.url(prefix="evict")
    backend = redis_backend(url)
    with pytest.raises(BackendError) as refused:
        backend.blocking.stats()
    message = str(refused.value)
    # It names the setting, what it is now, and the command that fixes it.
    for needle in ("maxmemory-policy", "'allkeys-lru'", "CONFIG SET maxmemory-policy noeviction"):
        assert needle in message, message
    asyncio.run(backend.close())

    app = Offload(url)

    @app.task
    def noop() -> str:
        return "ran"

    with pytest.raises(BackendError, match="maxmemory-policy"):
        noop.enqueue()
    app.close()
    assert client(evicting_server).dbsize() == 0, "a job was stored on an evicting server"

    # The fix the message gives makes the same URL work.
    client(evicting_server).config_set("maxmemory-policy", "noeviction")
    fixed = Offload(url)

    @fixed.task
    def still_noop() -> str:
        return "ran"

    queued = still_noop.enqueue()
    WorkerThread(fixed, burst=True).__enter__().join()
    assert queued.result(timeout=10) == "ran"
    fixed.close()


def test_the_cli_refuses_an_evicting_server_in_one_line(evicting_server: RedisServer) -> None:
    url = evicting_server.url(prefix="evict")
    for args in (["stats"], ["jobs"], ["enqueue", "cli_app:app", "add", "[1, 2]"]):
        result = offload_cli(*args, "--url", url)
        assert_one_line_error(result, "maxmemory-policy", "noeviction")
        assert result.stdout == ""
    assert client(evicting_server).dbsize() == 0


def test_a_worker_stops_on_an_evicting_server_instead_of_retrying(
    evicting_server: RedisServer,
) -> None:
    """A refusal is not an outage: the worker exits non-zero with the fix, even in --burst."""
    url = evicting_server.url(prefix="evict")
    result = offload_cli("worker", "cli_app:app", "--burst", "--url", url)
    assert result.returncode != 0
    assert "maxmemory-policy" in result.stderr and "noeviction" in result.stderr
    assert "Traceback" not in result.stderr


# -- unreachable server and bad URLs ----------------------------------------------------


@pytest.mark.timeout(DEADLINE_S)
def test_an_unreachable_server_is_reported_at_once() -> None:
    url = unreachable_url()
    backend = redis_backend(url)
    with pytest.raises(BackendError) as stats_failed:
        backend.blocking.stats()
    assert str(stats_failed.value).startswith("cannot connect to Redis"), stats_failed.value
    asyncio.run(backend.close())

    app = Offload(url)

    @app.task
    def noop() -> None: ...

    with pytest.raises(BackendError) as enqueue_failed:
        noop.enqueue()
    assert str(enqueue_failed.value).startswith("cannot connect to Redis"), enqueue_failed.value
    app.close()


@pytest.mark.timeout(DEADLINE_S)
def test_rediss_urls_open_the_redis_backend() -> None:
    """``rediss://`` (TLS) is routed to the Redis backend: its errors speak of Redis."""
    app = Offload(unreachable_url().replace("redis://", "rediss://", 1))
    with pytest.raises(BackendError, match=r"^cannot connect to Redis"):
        app.backend.blocking.stats()
    app.close()


UNREACHABLE_CLI = {
    "stats": ["stats"],
    "jobs": ["jobs"],
    "job": ["job", "some-id"],
    "enqueue": ["enqueue", "cli_app:app", "add", "[1, 2]"],
}


@pytest.mark.parametrize("case", list(UNREACHABLE_CLI))
def test_the_cli_reports_an_unreachable_server_in_one_line(case: str) -> None:
    result = offload_cli(*UNREACHABLE_CLI[case], "--url", unreachable_url())
    assert_one_line_error(result, "cannot connect to Redis")
    assert result.stdout == ""


BAD_URLS = {
    "empty prefix": ("redis://127.0.0.1:1/0?prefix=", ["prefix", "''"]),
    "prefix with a space": ("redis://127.0.0.1:1/0?prefix=my%20jobs", ["prefix", "'my jobs'"]),
    "prefix with braces": ("redis://127.0.0.1:1/0?prefix=%7Bjobs%7D", ["prefix", "'{jobs}'"]),
    "pool_max not a number": ("redis://127.0.0.1:1/0?pool_max=many", ["pool_max"]),
    "unknown option": ("redis://127.0.0.1:1/0?prefx=jobs", ["prefx", "option"]),
    "database not a number": ("redis://127.0.0.1:1/jobs", ["database"]),
}


@pytest.mark.parametrize("case", list(BAD_URLS))
def test_bad_url_options_are_named_not_reported_as_unreachable(case: str) -> None:
    """Port 1 refuses connections: only a check of the URL itself can give this error."""
    url, needles = BAD_URLS[case]
    with pytest.raises((ValueError, TypeError, BackendError)) as refused:
        redis_backend(url).blocking.stats()
    message = str(refused.value)
    assert all(needle in message for needle in needles), (needles, message)
    assert "cannot connect" not in message, message
    result = offload_cli("stats", "--url", url)
    assert_one_line_error(result, *needles)


# -- keys: prefixes and database numbers --------------------------------------------------


def test_prefixes_and_databases_keep_stores_apart(scratch_server: RedisServer) -> None:
    apps = {
        "alpha": Offload(scratch_server.url(prefix="alpha"), default_retries=0),
        "beta": Offload(scratch_server.url(prefix="beta"), default_retries=0),
        "offload": Offload(scratch_server.url(db=3), default_retries=0),  # the default prefix
    }
    jobs: dict[str, Job[str]] = {}
    for name, app in apps.items():

        @app.task(name="echo")
        def echo(text: str) -> str:
            return text

        jobs[name] = echo.enqueue(name)
    WorkerThread(apps["alpha"], burst=True).__enter__().join()
    assert jobs["alpha"].result(timeout=10) == "alpha"
    for name in ("beta", "offload"):  # another prefix, another database: not seen, not run
        assert jobs[name].state is JobState.QUEUED
        page = apps[name].backend.blocking.query(QueryParams(limit=10))
        assert [j.id for j in page.jobs] == [jobs[name].id]
    for app in apps.values():
        app.close()

    db0 = [key.decode() for key in client(scratch_server, 0).scan_iter()]
    db3 = [key.decode() for key in client(scratch_server, 3).scan_iter()]
    assert any(k.startswith("alpha:") for k in db0) and any(k.startswith("beta:") for k in db0)
    assert all(k.startswith(("alpha:", "beta:")) for k in db0), db0
    assert db3 and all(k.startswith("offload:") for k in db3), db3


# -- a SIGKILLed server under load ------------------------------------------------------------


class Producer(threading.Thread):
    """Enqueues jobs one by one like a web application, retrying each that fails.

    ``acked`` maps n to the id of the job whose enqueue returned: only those were promised
    to the caller. A failed enqueue may still have been stored (the reply was lost), so the
    store can hold a few more jobs than were acknowledged.
    """

    def __init__(self, jobs: int, give_up_s: float) -> None:
        super().__init__(daemon=True)
        self.jobs = jobs
        self.give_up_s = give_up_s
        self.acked: dict[int, str] = {}
        self.failures: list[BaseException] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for n in range(self.jobs):
                deadline = time.monotonic() + self.give_up_s
                while True:
                    try:
                        self.acked[n] = redis_app.tick.enqueue(n).id
                        break
                    except Exception as exc:
                        self.failures.append(exc)
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)  # a retry's pause, as an application would do
        except BaseException as exc:
            self.error = exc


@pytest.mark.slow
def test_a_sigkilled_server_loses_no_acknowledged_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = 1500
    server = RedisServer("--appendonly", "yes", "--appendfsync", "always").start()
    url = server.url(prefix="restart")
    logs = tmp_path / "executions"
    logs.mkdir()
    env = base_env(OFFLOAD_URL=url, EXEC_LOG_DIR=str(logs))
    app = redis_app.app  # the producer's app: the module the workers import, in this process
    app._backend = None
    app.url = url
    worker_logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers: list[subprocess.Popen[bytes]] = []
    producer = Producer(jobs, give_up_s=DEADLINE_S)
    workers_alive_at_end: list[bool] = []
    try:
        for log in worker_logs:
            with log.open("w") as sink:
                workers.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "offload", "worker", "redis_app:app",
                         "-c", "4", "--log-level", "WARNING"],
                        env=env, stdout=subprocess.DEVNULL, stderr=sink,
                    )
                )  # fmt: skip
        producer.start()
        wait_until(lambda: len(producer.acked) >= jobs // 3 or producer.error is not None,
                   timeout_s=DEADLINE_S, what="a third of the jobs to be enqueued")  # fmt: skip
        wait_until(lambda: any(p.stat().st_size for p in logs.iterdir()),
                   timeout_s=DEADLINE_S, what="the workers to run jobs")  # fmt: skip
        acked_before_kill = len(producer.acked)
        server.kill()
        time.sleep(2.0)  # the outage itself, not a synchronisation
        server.start()  # same port, same folder: the AOF brings the data back
        producer.join(DEADLINE_S * 3)
        assert not producer.is_alive(), "the producer never finished enqueueing"
        assert producer.error is None, f"the producer gave up: {producer.error!r}"

        def unfinished() -> int:
            counts = collections.Counter[str]()
            for row in app.backend.blocking.stats():
                counts.update(row.counts)
            return counts["queued"] + counts["scheduled"] + counts["running"]

        wait_until(lambda: unfinished() == 0, timeout_s=180, what="every job to finish")
        workers_alive_at_end = [worker.poll() is None for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in workers:
            worker.wait(timeout=DEADLINE_S)
        try:
            stored = app.backend.blocking.query(QueryParams(limit=jobs * 2)).jobs
        finally:
            app.close()
            server.destroy()

    states = collections.Counter(job.state for job in stored)
    state_of = {job.id: job.state for job in stored}
    acked_ids = set(producer.acked.values())
    lost = sorted(n for n, job_id in producer.acked.items() if job_id not in state_of)
    not_succeeded = sorted(
        n for n, job_id in producer.acked.items() if state_of.get(job_id) is not JobState.SUCCEEDED
    )
    extra = len(set(state_of) - acked_ids)  # stored although the producer saw its enqueue fail
    executions = collections.Counter[str]()
    for log in logs.iterdir():
        executions.update(line.split()[0] for line in log.read_text().splitlines() if line)
    never_ran = sorted(n for n, job_id in producer.acked.items() if executions[job_id] == 0)
    duplicated = sum(count - 1 for count in executions.values() if count > 1)
    stderr = "".join(log.read_text() for log in worker_logs)
    outage = [line for line in stderr.splitlines() if "Redis is unreachable" in line]
    failure_kinds = collections.Counter(type(exc).__name__ for exc in producer.failures)
    with capsys.disabled():
        print(
            f"\nRedis restart test: {jobs} jobs, {len(producer.acked)} acknowledged "
            f"({acked_before_kill} before the SIGKILL), {len(producer.failures)} failed enqueue "
            f"attempts {dict(failure_kinds)}, {extra} extra stored, {len(lost)} lost, "
            f"{len(not_succeeded)} acknowledged but not succeeded, {len(never_ran)} never ran, "
            f"{duplicated} duplicate executions, states {dict(states)}; "
            f"first outage line: {outage[:1]}"
        )
    assert producer.failures, "the server was not killed while the producer was enqueueing"
    assert all(isinstance(exc, BackendError) for exc in producer.failures), failure_kinds
    assert len(producer.acked) == jobs
    assert lost == [], f"acknowledged jobs missing after the restart: {lost[:20]}"
    assert not_succeeded == [], [(n, state_of.get(producer.acked[n])) for n in not_succeeded[:20]]
    assert never_ran == []
    assert states == {JobState.SUCCEEDED: len(stored)}
    assert workers_alive_at_end == [True, True], "a worker died instead of riding out the outage"
    assert outage, "the workers did not log that Redis was unreachable"
    assert "Traceback" not in stderr, stderr[-3000:]
