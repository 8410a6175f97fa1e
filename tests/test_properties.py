"""Hostile values through every public verb, from the call to a real worker's final state.

Hypothesis feeds text with lone surrogates, NUL and very long strings, numbers such as
NaN, infinities and huge integers, and nested JSON to enqueue (args, kwargs, options),
enqueue_many, batches, chains, cancel/retry, task errors and progress, and the CLI's
``enqueue``, on every store, with one real worker running. The property: each input ends
either as a clear error at the call site (an offload error, ValueError or TypeError with a
message; never a raw driver or codec error) or as a final state of its own jobs, and the
worker is never wedged (a later job still runs).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from offload import (
    BackendError,
    Job,
    JobCancelled,
    JobFailed,
    JobState,
    Offload,
    OffloadError,
    Retry,
)
from offload import current_job as job_context
from offload.cli import main as cli_main
from offload.task import Signature
from worker_helpers import WorkerThread

SETTLE_S = 20.0
RAW_MODULES = {"psycopg", "redis", "sqlite3", "_sqlite3", "msgspec", "hiredis", "json"}
LONG_TEXT = "x" * 200_000

# -- values -----------------------------------------------------------------------------
chars = st.one_of(
    st.characters(),
    st.characters(categories=["Cs"]),  # lone surrogates ('\udcff' from os.listdir)
    st.sampled_from(["\x00", "\udcff", "\ud800", "\uffff", "\U0010ffff"]),
)
texts = st.one_of(st.text(chars, max_size=30), st.sampled_from([LONG_TEXT, "", " ", "\x00"]))
numbers = st.one_of(
    st.floats(),  # NaN and infinities included
    st.integers(),
    st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**40, 1e308, -0.0, 1e14, 5e-324]),
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
delays = st.one_of(st.none(), numbers)


# -- the app and its worker, one per test and store ---------------------------------------
class Live:
    """An app on one store, a worker running it, and the checks every example ends with."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.app = app = Offload(url, default_retries=0, lease_s=5)

        @app.task
        def echo(value: Any) -> Any:
            return value

        @app.task
        def echo_kwargs(**kwargs: Any) -> Any:
            return kwargs

        @app.task
        def fail_with(message: Any) -> None:
            raise RuntimeError(message)

        @app.task
        def progress_with(message: Any) -> None:
            job_context().set_progress(0.5, message)
            time.sleep(0.3)  # the progress loop stores it meanwhile

        # The outcome's text is built in the task from code points, so that lone surrogates
        # and NUL reach the worker's outcome path (as an argument they fail at enqueue).
        @app.task
        def fail_with_text(codes: list[int]) -> None:
            raise OSError(f"cannot open {''.join(map(chr, codes))}")

        @app.task
        def progress_with_text(codes: list[int]) -> None:
            job_context().set_progress(0.5, "".join(map(chr, codes)))
            time.sleep(0.3)

        @app.task
        def return_text(codes: list[int]) -> str:
            return "".join(map(chr, codes))

        @app.task(retries=2)
        def retry_in(delay: str) -> None:
            raise Retry("again later", delay_s=float(delay))

        @app.task
        def collect(outcomes: list[Any], *extra: Any) -> int:
            return len(outcomes)

        @app.task
        def cli_echo(*values: Any, **named: Any) -> Any:  # what the CLI test enqueues
            return [values, named]

        self.echo, self.echo_kwargs, self.fail_with = echo, echo_kwargs, fail_with
        self.progress_with, self.collect = progress_with, collect
        self.outcome_tasks = (fail_with_text, progress_with_text, return_text)
        self.retry_in = retry_in
        self.wedged: str | None = None
        self.worker = WorkerThread(app, concurrency=4).__enter__()

    def close(self) -> None:
        try:
            self.worker.stop(timeout_s=20)
        finally:
            self.app.close()

    def usable(self) -> None:
        """Fail at once, not after a long wait, once an earlier example wedged the worker."""
        assert self.wedged is None, (
            f"the worker is still wedged by an earlier example: {self.wedged}"
        )

    def fail(self, message: str) -> None:
        self.wedged = message[:300]
        raise AssertionError(message)

    def wait_final(self, job: Job[Any]) -> None:
        self.usable()
        try:
            job.result(timeout=SETTLE_S)
        except (JobFailed, JobCancelled):
            pass
        except TimeoutError:
            self.fail(f"{job!r} not final after {SETTLE_S} s: {job.record!r}")

    def end(self, jobs: list[Job[Any]], runs: bool = True) -> None:
        """Each job reaches a final state; one that cannot run here (a delay, another
        queue) is cancelled, then queued again with retry() and run or cancelled again."""
        for job in jobs:
            if not runs:
                assert job.cancel() or job.state.is_terminal, f"cannot cancel {job!r}"
                continue
            self.wait_final(job)

    def settle(self) -> None:
        """Nothing left queued or running (batch callbacks and chain steps included), and the
        worker still takes a new job."""
        self.usable()
        deadline = time.monotonic() + SETTLE_S
        while True:
            busy = {
                state: n
                for row in self.app.backend.blocking.stats()
                for state, n in row.counts.items()
                if state in ("queued", "running") and n
            }
            if not busy:
                break
            if time.monotonic() > deadline:
                self.fail(f"jobs stuck after {SETTLE_S} s: {busy}")
            time.sleep(0.05)
        if self.worker.error is not None:
            self.fail(f"the worker died: {self.worker.error!r}")
        probe = self.echo.enqueue("still alive")
        self.wait_final(probe)
        assert probe.result(timeout=1) == "still alive"


def check_clear_error(exc: BaseException) -> None:
    """A call-site error a person can act on: ours, or a plain ValueError/TypeError."""
    chain = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc!s:.300}"
    assert isinstance(exc, (OffloadError, ValueError, TypeError)), f"unexpected error {chain}"
    assert not isinstance(exc, (UnicodeError, BackendError)), f"raw error {chain}"
    assert type(exc).__module__.split(".")[0] not in RAW_MODULES, f"raw driver error {chain}"
    assert str(exc).strip(), f"an error without a message: {chain}"


def attempt(call: Callable[[], Any]) -> Any:
    """The call's result, or None after checking that it failed clearly."""
    try:
        return call()
    except Exception as exc:
        check_clear_error(exc)
        return None


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Live]:
    if request.param == "memory":
        if request.function.__name__ == "test_cli_enqueue":
            pytest.skip("the CLI would open an in-memory store of its own")
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/props.db"
    else:
        url = str(request.getfixturevalue(f"{request.param}_url"))
    running = Live(url)
    try:
        yield running
    finally:
        running.close()


def hostile(max_examples: int) -> Callable[[Any], Any]:
    """Few examples (each runs real jobs), no shrinking (a stuck job makes each try slow)."""
    return settings(
        max_examples=max_examples, deadline=None, database=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large, HealthCheck.large_base_example],
    )  # fmt: skip


# -- the properties -------------------------------------------------------------------------
@hostile(12)
@given(value=json_values, key=texts)
@example(value="\udcff", key="k")
@example(value="a\x00b", key="\x00")
@example(value=float("nan"), key="\udcff")
@example(value=[2**64, 10**40, float("inf")], key=LONG_TEXT)
@example(value={"\udcff": {"\x00": -(2**63) - 1}}, key="x")
def test_enqueue_args_and_kwargs(live: Live, value: Any, key: str) -> None:
    jobs = [
        attempt(lambda: live.echo.enqueue(value)),
        attempt(lambda: live.echo_kwargs.enqueue(**{key or "k": value})),
        attempt(lambda: live.echo.enqueue_many([live.echo.s(value), live.echo.s([value])])),
    ]
    flat = [j for found in jobs if found for j in (found if isinstance(found, list) else [found])]
    live.end(flat)
    live.settle()


@hostile(15)
@given(delay=delays, text=texts, priority=numbers, meta=st.dictionaries(texts, json_values))
@example(delay=float("nan"), text="k", priority=0, meta={})
@example(delay=float("inf"), text="\udcff", priority=2**63, meta={"\x00": "\udcff"})
@example(delay=1e14, text="\x00", priority=-(2**63) - 1, meta={})
@example(delay=-1.0, text=LONG_TEXT, priority=0, meta={"m": float("nan")})
def test_options(live: Live, delay: Any, text: str, priority: Any, meta: dict[str, Any]) -> None:
    """delay, key, owner, meta and priority through options(); a job that waits is cancelled,
    queued again with retry(), and must then end too."""
    as_priority = priority if isinstance(priority, int) else 0
    calls = [
        lambda: live.echo.options(delay=delay).enqueue(1),
        lambda: live.echo.options(key=text).enqueue(2),
        lambda: live.echo.options(owner=text).enqueue(3),
        lambda: live.echo.options(meta=meta).enqueue(4),
        lambda: live.echo.options(priority=as_priority).enqueue(5),
        lambda: live.echo.options(queue=text).enqueue(6),
    ]
    for n, call in enumerate(calls):
        job = attempt(call)
        if job is None:
            continue
        runs_here = job.record.queue == live.app.default_queue and job.record.state in (
            JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED)  # fmt: skip
        if n == 0 and not runs_here:  # waits for its delay: cancel, then try it again now
            live.end([job], runs=False)
            job.retry()  # a worker may claim it before retry() reads it back: not "queued"
            assert job.record.state is not JobState.CANCELLED, f"retry() left {job!r} cancelled"
            live.wait_final(job)
        else:
            live.end([job], runs=runs_here)
    live.settle()


@hostile(12)
@given(values=st.lists(json_values, min_size=1, max_size=4))
@example(values=["\udcff", 1])
@example(values=[float("nan"), "\x00"])
@example(values=[LONG_TEXT, 2**64])
def test_batches_and_chains(live: Live, values: list[Any]) -> None:
    """A batch of echo jobs with a callback that also carries the values, and a chain."""
    signatures = [attempt(lambda v=v: live.echo.s(v)) for v in values]
    members: list[Signature[Any]] = [s for s in signatures if s is not None]
    callback = attempt(lambda: live.collect.s(*values))
    batch = attempt(lambda: live.app.batch(members, on_complete=callback)) if members else None
    chain = None
    if members:
        steps = members[0]
        for _ in values:
            steps = steps | live.echo.s()  # type: ignore[assignment]
        chain = attempt(steps.enqueue)
    if batch is not None:
        live.end(batch.jobs())
        deadline = time.monotonic() + SETTLE_S
        while not batch.status().finished:
            if time.monotonic() > deadline:
                live.fail(f"batch {batch.id} never finished")
            time.sleep(0.05)
    if chain is not None:
        live.wait_final(chain)
    live.settle()


@hostile(12)
@given(message=st.one_of(texts, json_values))
@example(message="report-\udcff.txt")
@example(message="a NUL \x00 here")
@example(message=LONG_TEXT)
@example(message={"\udcff": float("nan")})
def test_task_errors_and_progress(live: Live, message: Any) -> None:
    """A task's error message and progress message hold the value: its job still ends."""
    jobs = [
        attempt(lambda: live.fail_with.enqueue(message)),
        attempt(lambda: live.progress_with.enqueue(message)),
    ]
    live.end([j for j in jobs if j is not None])
    live.settle()


code_points = st.lists(
    st.one_of(st.integers(0, 0x10FFFF), st.sampled_from([0, 0xD800, 0xDCFF, 0xDFFF])), max_size=20
)


@hostile(12)
@given(codes=code_points, delay=numbers)
@example(codes=[0xDCFF], delay=1e14)
@example(codes=[0x61, 0, 0x62], delay=float("nan"))
@example(codes=[0xD800, 0xDC00], delay=float("inf"))
@example(codes=[0x78] * 200_000, delay=2**64)
@example(codes=[], delay=-1.0)
def test_outcomes_built_in_the_task(live: Live, codes: list[int], delay: Any) -> None:
    """Errors, progress messages and results holding lone surrogates, NUL or 200,000
    characters, and Retry(delay_s=...) with NaN, infinities and huge delays: the job ends
    (or waits for its retry, then is cancelled) and the worker goes on."""
    jobs = [task.enqueue(codes) for task in live.outcome_tasks]
    live.end(jobs)
    retried = live.retry_in.enqueue(repr(delay))
    deadline = time.monotonic() + SETTLE_S
    while retried.state in (JobState.QUEUED, JobState.RUNNING):
        if time.monotonic() > deadline:
            live.fail(f"{retried!r} stuck: {retried.record!r}")
        time.sleep(0.05)
    if retried.state is JobState.SCHEDULED:  # a retry far away: it must at least cancel
        live.end([retried], runs=False)
    live.settle()


#: The app the CLI loads (``test_properties:cli_app``); each example points it at the store.
cli_app = Offload(default_retries=0)


@cli_app.task
def cli_echo(*values: Any, **named: Any) -> Any:
    return [values, named]


@hostile(12)
@given(args=st.one_of(texts, json_values.map(json.dumps)), kwargs=json_values.map(json.dumps))
@example(args='["\\udcff"]', kwargs="{}")
@example(args="[NaN, Infinity, 1e999]", kwargs='{"\\u0000": "\\ud800"}')
@example(args="[1e400]", kwargs="{}")
@example(args="not json", kwargs="[]")
def test_cli_enqueue(live: Live, args: str, kwargs: str) -> None:
    """``offload enqueue APP echo JSON_ARGS --kwargs JSON``: a job id or a one-line error."""
    cli_app._backend = None
    cli_app.url = live.url
    try:
        done = CliRunner().invoke(
            cli_main,
            ["enqueue", "test_properties:cli_app", "cli_echo", args, "--kwargs", kwargs,
             "--url", live.url],
        )  # fmt: skip
    finally:
        cli_app.close()
    if done.exit_code == 0:
        job_id = done.output.strip()
        live.wait_final(live.app.job(job_id))
    else:
        assert done.exception is None or isinstance(done.exception, SystemExit), (
            f"the CLI crashed: {done.exception!r}\n{done.output}"
        )
        assert "Traceback" not in done.output and done.output.strip(), done.output
    live.settle()
