"""Rate and concurrency limits, on every store.

Rate tests run on a fake clock shared by the app and the store: the test moves
time forward in small steps and then checks the start times the tasks saw, so
the verdict never depends on how fast this machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import pytest

from offload import ConcurrencyLimit, Job, JobState, Offload, RateLimit
from offload.backends import open_backend
from offload.backends.base import (
    BackendError,
    ClaimParams,
    EnqueueParams,
    FinishParams,
    MarkNamesParams,
    MarkParams,
)
from offload.errors import ConfigurationError
from offload.limits import META_KEY, Limiter, gcra, keyed_limits, parse_rate
from offload.records import NewJob
from offload.worker.runner import Worker
from worker_helpers import WorkerThread, wait_until

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def run_clock_until(clock: Clock, done: object, step_s: float = 0.05, what: str = "") -> None:
    """Move fake time forward a little at a time until ``done()``; real waiting is bounded."""
    deadline = time.monotonic() + 60
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        clock.advance(step_s)
        time.sleep(0.01)


def step_clock_until_done(app: Offload, clock: Clock, jobs: list[Job[Any]], step_s: float) -> None:
    """Advance fake time only while nothing is due or running, so that a task reads the very
    instant its worker let it start: start times then measure the limiter, not this machine."""
    deadline = time.monotonic() + 60
    while True:
        records = [app.job(j.id).record for j in jobs]
        if all(r.state is JobState.SUCCEEDED for r in records):
            return
        now = clock()
        settled = all(
            r.state is JobState.SUCCEEDED or (r.state is JobState.SCHEDULED and r.run_at > now)
            for r in records
        )
        assert time.monotonic() < deadline, f"stuck at {now - T0:.2f}s: {records}"
        if settled:
            clock.advance(step_s)
        else:
            time.sleep(0.005)


# -- pure logic -------------------------------------------------------------------------


def test_rates_read_as_people_write_them() -> None:
    assert parse_rate("10/s") == 0.1
    assert parse_rate("100/min") == 0.6
    assert parse_rate("5 / hour") == 720.0
    assert parse_rate("1/5s") == 5.0
    assert parse_rate("2/day") == 43200.0


@pytest.mark.parametrize("text", ["ten per second", "10", "0/s", "10/fortnight", "-1/s"])
def test_a_bad_rate_is_refused_with_the_form(text: str) -> None:
    with pytest.raises(ConfigurationError, match="rate must"):
        parse_rate(text)


def test_the_bucket_lets_a_burst_through_then_spaces_starts() -> None:
    tat, starts = 0.0, []
    for _ in range(5):
        tat, start = gcra(tat, 100.0, 1.0, 3)
        starts.append(start)
    assert starts == [100.0, 100.0, 100.0, 101.0, 102.0]
    tat, start = gcra(tat, 200.0, 1.0, 3)  # a long pause refills the bucket
    assert start == 200.0


def test_bad_limit_settings_are_refused() -> None:
    app = Offload("memory://")
    with pytest.raises(ConfigurationError, match="rate must look like"):
        app.task(rate="fast")
    with pytest.raises(ConfigurationError, match="max_running must be an int >= 1"):
        app.task(concurrency=0)
    with pytest.raises(ConfigurationError, match="burst must be an int >= 1"):
        RateLimit("1/s", burst=0)
    with pytest.raises(ConfigurationError, match="key must be a function"):
        ConcurrencyLimit(1, key="user_id")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="RateLimit"):
        app.task(limits=["10/s"])(lambda: None)  # type: ignore[list-item]


def test_unnamed_limits_belong_to_their_task_and_named_ones_are_shared() -> None:
    app = Offload("memory://")
    api = RateLimit("10/s", name="payments-api")

    @app.task(rate="1/s", limits=[api])
    def charge() -> None: ...

    @app.task(limits=[api])
    def refund() -> None: ...

    assert [limit.name for limit in charge.defaults.limits] == ["payments-api", "charge"]
    assert [limit.name for limit in refund.defaults.limits] == ["payments-api"]


# -- on every store ----------------------------------------------------------------------


def test_a_rate_limit_spaces_starts_without_burning_attempts(
    store_url: str,
) -> None:
    clock = Clock()
    app = Offload(store_url, clock=clock, default_retries=0)
    starts: list[float] = []

    @app.task(rate="2/s")  # one start every 0.5 s, whichever worker runs it
    def call_api(n: int) -> None:
        starts.append(clock())

    try:
        jobs = call_api.enqueue_many(call_api.s(n) for n in range(8))
        with WorkerThread(app, idle_check_s=0.05, concurrency=8):
            step_clock_until_done(app, clock, jobs, step_s=0.1)
        assert len(starts) == 8
        gaps = [b - a for a, b in zip(sorted(starts), sorted(starts)[1:], strict=False)]
        assert min(gaps) >= 0.5 - 1e-6, sorted(starts)
        for job in jobs:
            record = app.job(job.id).record
            assert (record.attempt, record.max_attempts) == (1, 1)  # waiting used no attempt
        deferred = [app.job(j.id).record.meta.get(META_KEY) for j in jobs]
        assert sum(1 for note in deferred if note) >= 6
        assert "waiting for rate limit 'call_api' (2/s)" in str(deferred)
    finally:
        app.close()


def test_a_keyed_rate_limit_keeps_one_bucket_per_key(store_url: str) -> None:
    clock = Clock()
    app = Offload(store_url, clock=clock, default_retries=0)
    starts: dict[str, list[float]] = {"a.example": [], "b.example": []}

    @app.task(limits=[RateLimit("1/s", key=lambda host, path: host)])
    def fetch(host: str, path: str) -> None:
        starts[host].append(clock())

    try:
        jobs = fetch.enqueue_many(
            fetch.s(host, f"/{n}") for n in range(3) for host in ("a.example", "b.example")
        )
        with WorkerThread(app, idle_check_s=0.05, concurrency=8):
            step_clock_until_done(app, clock, jobs, step_s=0.25)
        for host, times in starts.items():
            assert len(times) == 3, host
            times.sort()
            assert times[1] - times[0] >= 1 - 1e-6 and times[2] - times[1] >= 1 - 1e-6
        # the two hosts did not share a bucket: each one's first call started at once
        assert starts["a.example"][0] == starts["b.example"][0] == T0
    finally:
        app.close()


def test_a_concurrency_limit_per_key_holds_one_user_back_but_not_another(store_url: str) -> None:
    clock = Clock()
    app = Offload(store_url, clock=clock, default_retries=0)
    gates = {name: threading.Event() for name in ("u1-a", "u1-b", "u2-a")}
    running: dict[str, int] = {"u1": 0, "u2": 0}
    most: dict[str, int] = {"u1": 0, "u2": 0}
    started: list[str] = []
    lock = threading.Lock()

    @app.task(limits=[ConcurrencyLimit(1, key=lambda user, name: user, retry_s=1.0)])
    def convert(user: str, name: str) -> None:
        with lock:
            running[user] += 1
            most[user] = max(most[user], running[user])
            started.append(name)
        gates[name].wait(30)
        with lock:
            running[user] -= 1

    try:
        jobs = {
            "u1-a": convert.enqueue("u1", "u1-a"),
            "u1-b": convert.enqueue("u1", "u1-b"),
            "u2-a": convert.enqueue("u2", "u2-a"),
        }
        with WorkerThread(app, idle_check_s=0.05, concurrency=4):
            # Both of u1's jobs were claimed together: whichever took the slot runs, the other
            # waits, and u2's job is not held up behind either.
            wait_until(
                lambda: "u2-a" in started and any(n.startswith("u1") for n in started),
                what="two users at once",
            )
            running_u1 = next(n for n in started if n.startswith("u1"))
            waiting_u1 = "u1-b" if running_u1 == "u1-a" else "u1-a"
            second = jobs[waiting_u1]
            wait_until(lambda: second.refresh().state is JobState.SCHEDULED, what="the deferral")
            held = app.job(second.id).record
            assert held.attempt == 0
            assert "concurrency limit 'convert' (1 at once), key 'u1'" in str(held.meta[META_KEY])
            gates["u2-a"].set()
            wait_until(lambda: jobs["u2-a"].refresh().state is JobState.SUCCEEDED)
            gates[running_u1].set()
            wait_until(lambda: jobs[running_u1].refresh().state is JobState.SUCCEEDED)
            gates[waiting_u1].set()
            run_clock_until(clock, lambda: second.refresh().state is JobState.SUCCEEDED, step_s=0.2)
        assert most == {"u1": 1, "u2": 1}
        assert app.job(second.id).record.attempt == 1
    finally:
        for gate in gates.values():
            gate.set()
        app.close()


def test_a_slot_held_by_a_job_that_is_not_running_is_taken_back(store_url: str) -> None:
    app = Offload(store_url, default_retries=0)
    ran: list[int] = []

    @app.task(concurrency=1)
    def only_one(n: int) -> None:
        ran.append(n)

    try:
        # A worker that was SIGKILLed while it held the slot leaves its holder behind.
        app.backend.blocking.set_mark(
            MarkParams(name="limit:running:only_one:", value='{"holders":{"ghost-job":3}}')
        )
        job = only_one.enqueue(1)
        with WorkerThread(app, idle_check_s=0.05):
            wait_until(lambda: job.refresh().state is JobState.SUCCEEDED, what="the job")
        assert ran == [1]
        assert app.job(job.id).record.meta == {}  # admitted at once, never deferred
    finally:
        app.close()


def test_global_concurrency_holds_across_workers(store_url: str) -> None:
    apps = [Offload(store_url, default_retries=0) for _ in range(2)]
    if store_url == "memory://":
        apps = apps[:1]  # a memory store lives in one app; its workers are one process
    running = 0
    most = 0
    lock = threading.Lock()

    def render(n: int) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.03)
        with lock:
            running -= 1

    tasks = [
        app.task(name="render", limits=[ConcurrencyLimit(2, retry_s=0.05)])(render) for app in apps
    ]
    try:
        jobs = tasks[0].enqueue_many(tasks[0].s(n) for n in range(12))
        with contextlib.ExitStack() as workers:
            for app in apps:
                workers.enter_context(WorkerThread(app, idle_check_s=0.05, concurrency=4))
            wait_until(
                lambda: all(j.refresh().state is JobState.SUCCEEDED for j in jobs),
                what="every render",
            )
        assert most <= 2
        assert all(apps[0].job(j.id).record.attempt == 1 for j in jobs)
    finally:
        for app in apps:
            app.close()


def test_a_key_function_that_fails_fails_the_job_not_the_worker(store_url: str) -> None:
    app = Offload(store_url, default_retries=0)

    @app.task(limits=[RateLimit("100/s", key=lambda payload: payload["host"])])
    def post(payload: dict[str, str]) -> None: ...

    @app.task(limits=[ConcurrencyLimit(1, key=lambda n: [n])])
    def odd(n: int) -> None: ...

    @app.task
    def fine() -> str:
        return "ok"

    try:
        missing = post.enqueue({"path": "/"})
        unhashable = odd.enqueue(1)
        healthy = fine.enqueue()
        with WorkerThread(app, idle_check_s=0.05):
            for job in (missing, unhashable, healthy):
                wait_until(lambda job=job: job.refresh().state.is_terminal)  # type: ignore[misc]
        assert app.job(missing.id).record.error.type == "KeyError"  # type: ignore[union-attr]
        error = app.job(unhashable.id).record.error
        assert error is not None and "must return a str or an int" in error.message
        assert healthy.result() == "ok"
    finally:
        app.close()


def test_a_store_error_while_giving_back_a_slot_keeps_the_outcome() -> None:
    app = Offload("memory://", default_retries=0)
    runs: list[int] = []
    blip = {"on": False}

    @app.task(concurrency=1)
    async def charge(n: int) -> str:
        runs.append(n)
        blip["on"] = True  # the store hiccups just as the run ends
        return "charged"

    backend = app.backend
    real_set_mark = backend.set_mark

    async def flaky_set_mark(params: MarkParams) -> bool:
        if blip["on"]:
            blip["on"] = False
            raise BackendError("connection reset")
        return await real_set_mark(params)

    backend.set_mark = flaky_set_mark  # type: ignore[method-assign]
    job = charge.enqueue(1)
    asyncio.run(Worker(app, burst=True, idle_check_s=0.05).run())
    record = app.job(job.id).record
    assert (record.state, runs, record.crashes) == (JobState.SUCCEEDED, [1], 0)


def test_several_rate_limits_defer_a_job_once_to_the_latest_slot() -> None:
    async def scenario() -> None:
        clock = Clock()
        app = Offload("memory://", clock=clock)
        backend = app.backend
        fast, slow = RateLimit("1/s", name="fast"), RateLimit("1/10s", name="slow")
        limiter = Limiter(backend, clock)
        await backend.enqueue(EnqueueParams(jobs=[NewJob(id=i, task="t", queue="q", payload=b"[]")
                                                  for i in ("j0", "j1")]))  # fmt: skip
        first, second = await backend.claim(
            ClaimParams(queues=["q"], limit=2, worker="w", lease_s=60)
        )
        assert (await limiter.admit(first, keyed_limits([fast, slow], [], {}))).deferral is None
        held = await limiter.admit(second, keyed_limits([fast, slow], [], {}))
        assert held.deferral is not None and held.not_before == T0 + 10  # the slower limit's slot
        assert held.deferral.meta is not None
        assert held.deferral.meta[META_KEY]["prepaid"] == {
            "fast": [T0 + 10, 2],
            "slow": [T0 + 10, 2],
        }
        await backend.finish(FinishParams(outcomes=[held.deferral]))
        clock.advance(10)
        (again,) = await backend.claim(ClaimParams(queues=["q"], limit=1, worker="w", lease_s=60))
        # both reservations are honoured at once: no second trip through either limit
        assert (await limiter.admit(again, keyed_limits([fast, slow], [], {}))).deferral is None

    asyncio.run(scenario())


def test_a_worker_with_a_fast_clock_does_not_hold_back_a_correct_one(store_url: str) -> None:
    """Buckets are read on the store's clock: a worker 60 s fast used to reserve slots 60 s
    ahead, and a job on a correct worker then waited a minute for a 1/s limit."""

    async def scenario() -> None:
        store_clock = Clock()
        backend = open_backend(store_url, clock=store_clock)
        fast = Limiter(backend, lambda: store_clock() + 60)
        correct = Limiter(backend, store_clock)
        keyed = keyed_limits([RateLimit("1/s", name="api")], [], {})
        try:
            jobs = [NewJob(id=f"j{i}", task="t", queue="q", payload=b"[[],{}]") for i in range(3)]
            await backend.enqueue(EnqueueParams(jobs=jobs))
            one, two, three = await backend.claim(
                ClaimParams(queues=["q"], limit=3, worker="w", lease_s=60)
            )
            assert (await fast.admit(one, keyed)).deferral is None
            held = await correct.admit(two, keyed)
            assert held.deferral is not None and held.deferral.retry_delay_s == 1.0
            assert held.not_before == T0 + 1  # on the correct worker's own clock
            later = await fast.admit(three, keyed)
            assert later.deferral is not None and later.deferral.retry_delay_s == 2.0
            assert later.not_before == T0 + 60 + 2  # on the fast worker's own clock
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_limit_marks_expire_once_they_no_longer_matter() -> None:
    """A full bucket and a limit nobody holds are what a missing mark means: each mark is
    written with a lifetime, so one per key ever used does not pile up in the store."""

    async def scenario() -> None:
        clock = Clock()
        app = Offload("memory://", clock=clock)
        backend = app.backend
        limiter = Limiter(backend, clock)
        keyed = keyed_limits(
            [RateLimit("1/s", name="api", key=lambda user: user), ConcurrencyLimit(1, name="c")],
            ["u1"], {},
        )  # fmt: skip
        await backend.enqueue(EnqueueParams(jobs=[NewJob(id="j0", task="t", queue="q",
                                                         payload=b"[[],{}]")]))  # fmt: skip
        (job,) = await backend.claim(ClaimParams(queues=["q"], limit=1, worker="w", lease_s=60))
        admission = await limiter.admit(job, keyed)
        assert admission.deferral is None
        names = ["limit:rate:api:u1", "limit:running:c:"]
        assert set(await backend.get_marks(MarkNamesParams(names=names))) == set(names)
        clock.advance(3600)  # still running: its slot is kept however long it runs
        assert set(await backend.get_marks(MarkNamesParams(names=names))) == {names[1]}
        await limiter.release(job, admission)
        clock.advance(3600)
        assert await backend.get_marks(MarkNamesParams(names=names)) == {}

    asyncio.run(scenario())
