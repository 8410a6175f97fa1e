"""Outcomes a store cannot take, rows it cannot read, arguments that do not decode: each
fails its own job, on every store, and the worker goes on."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from offload import JobState, Offload, Retry, current_job
from offload.backends import open_backend
from offload.backends.base import (
    Backend,
    EnqueueParams,
    FinishParams,
    FinishResult,
    ValueRejected,
)
from offload.records import ErrorInfo, NewJob
from offload.worker import acks, outcomes
from worker_helpers import WorkerThread, wait_until

SURROGATE = "report-\udcff.txt"
YEAR_S = 365 * 24 * 3600.0


def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path}/jobs.db",
    }.get(request.param) or request.getfixturevalue(f"{request.param}_url")


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Offload]:
    application = Offload(store_url(request, tmp_path), default_retries=0)
    yield application
    application.close()


# -- pure decisions -----------------------------------------------------------
def test_storable_text_escapes_surrogates_and_nul_and_cuts_long_texts() -> None:
    assert outcomes.storable_text(SURROGATE, 100) == "report-\\udcff.txt"
    assert outcomes.storable_text("a\x00b", 100) == "a\\x00b"
    assert outcomes.storable_text("plain é ✓", 100) == "plain é ✓"
    cut = outcomes.storable_text("x" * 50 + "END", 20)
    assert len(cut) == 20 and cut.startswith("x")
    tail = outcomes.storable_text("START" + "x" * 50 + "END", 20, keep_end=True)
    assert len(tail) == 20 and tail.endswith("END")
    (cut + tail).encode("utf-8")  # encodable: no lone surrogate left


def test_errors_are_storable_from_construction() -> None:
    error = outcomes.error_info(OSError(f"cannot open {SURROGATE}\x00" + "y" * 100_000))
    assert "\x00" not in error.message and "\\udcff" in error.message
    assert len(error.message) <= outcomes.MAX_MESSAGE_CHARS
    assert error.traceback is not None and len(error.traceback) <= outcomes.MAX_TRACEBACK_CHARS
    error.message.encode("utf-8")
    error.traceback.encode("utf-8")


@pytest.mark.parametrize(
    ("asked_s", "expected_s"),
    [(1e14, YEAR_S), (math.inf, YEAR_S),
     (-5.0, 0.0), (math.nan, 0.0), (12.5, 12.5)],
)  # fmt: skip
def test_retry_delays_are_clamped(asked_s: float, expected_s: float) -> None:
    assert outcomes.clamp_delay_s(asked_s) == expected_s


# -- end to end, every store --------------------------------------------------
def test_unstorable_texts_and_delays_fail_only_their_job(app: Offload) -> None:
    """A lone surrogate, a NUL, a delay of 1e14 s: each job ends in a final state with a
    readable error, and the worker goes on storing the others' outcomes."""

    @app.task
    def lists_a_bad_file() -> None:
        current_job().set_progress(0.5, f"reading {SURROGATE}\x00")
        raise OSError(f"cannot read {SURROGATE} (\x00)")

    @app.task(retries=1)
    def asks_forever() -> None:
        raise Retry("come back in three million years", delay_s=1e14)

    @app.task
    def fine(n: int) -> int:
        return n

    bad = lists_a_bad_file.enqueue()
    far = asks_forever.enqueue()
    good = [fine.enqueue(n) for n in range(5)]
    with WorkerThread(app):
        wait_until(lambda: bad.refresh().state is JobState.DEAD, what="the bad job dead")
        wait_until(lambda: far.refresh().state is JobState.SCHEDULED, what="the retry stored")
        for n, job in enumerate(good):
            assert job.result(timeout=30) == n
        after = fine.enqueue(99)  # the acknowledgement loop is still alive
        assert after.result(timeout=30) == 99
    error = bad.record.error
    assert error is not None and error.type == "OSError"
    assert "report-\\udcff.txt" in error.message and "\\x00" in error.message
    far_record = far.refresh().record
    assert far_record.run_at - app.backend.blocking.now() <= YEAR_S + 60


@dataclasses.dataclass
class Order:
    lines: dict[str, int]

    def __post_init__(self) -> None:
        self.total = self.lines["total"]  # KeyError for input that lacks it


def test_a_decoder_raising_anything_fails_its_job_at_once(app: Offload) -> None:
    @app.task(retries=3)
    def bill(order: Order) -> int:
        return order.total

    # Enqueued raw: the caller-side check would refuse it (the row came from elsewhere).
    new = NewJob(
        id=app.new_id(), task="bill", queue=app.default_queue, payload=b'[[{"lines":{}}],{}]',
        max_attempts=4,
    )  # fmt: skip
    app.backend.blocking.enqueue(EnqueueParams(jobs=[new]))
    ok = bill.enqueue(Order({"total": 3}))
    with WorkerThread(app):
        assert ok.result(timeout=30) == 3
        handle = app.job(new.id)
        wait_until(lambda: handle.refresh().state is JobState.DEAD, what="dead at once")
    record = handle.record
    assert record.crashes == 0 and record.error is not None
    assert record.error.type == "PayloadError" and "KeyError" in record.error.message


# -- a store that refuses one outcome ----------------------------------------
class RefusingStore:
    """A real store that refuses (as a store translating its driver's error would) every
    ``finish`` call carrying an outcome whose result holds ``marker``: a fault injector."""

    def __init__(
        self, inner: Backend, marker: bytes, refusal: Exception, times: int | None = None
    ) -> None:
        self._inner = inner
        self._marker = marker
        self._refusal = refusal
        self._times = times  # refuse this many calls, then let them through (None: always)
        self.refused_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def finish(self, params: FinishParams) -> FinishResult:
        refusing = self._times is None or self.refused_calls < self._times
        if refusing and any(self._marker in (o.result or b"") for o in params.outcomes):
            self.refused_calls += 1
            raise self._refusal
        return await self._inner.finish(params)


@pytest.mark.parametrize("store", ["memory", "sqlite", "postgres", "redis"])
@pytest.mark.parametrize(
    "refusal", [ValueRejected("value out of range"), KeyError("a bug in the store")]
)
def test_a_refused_outcome_fails_only_its_own_job(
    store: str,
    refusal: Exception,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An error that is not ValueRejected is first waited out as a hiccup; not for long here.
    monkeypatch.setattr(acks, "UNEXPLAINED_GRACE_S", 1.0)
    request.param = store
    url = store_url(request, tmp_path)
    refusing = RefusingStore(open_backend(url), b"POISON", refusal)
    app = Offload(url, backend=refusing, default_retries=0)  # type: ignore[arg-type]

    @app.task
    def echo(text: str) -> str:
        return text

    try:
        jobs = [echo.enqueue(f"text {n}") for n in range(12)]
        poisoned = echo.enqueue("POISON")
        more = [echo.enqueue(f"more {n}") for n in range(12)]
        with WorkerThread(app, concurrency=30):
            for job in jobs + more:
                assert job.result(timeout=30).startswith(("text", "more"))
            wait_until(lambda: poisoned.refresh().state is JobState.DEAD, what="poison dead")
            late = echo.enqueue("late")  # the loop survived
            assert late.result(timeout=30) == "late"
        error = poisoned.record.error
        assert error is not None and error.type == "OutcomeRejected"
        assert "succeeded outcome could not be stored" in error.message
        assert type(refusal).__name__ in error.message
        assert refusing.refused_calls >= 1
    finally:
        app.close()


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_an_unexplained_finish_failure_is_waited_out_not_dead_lettered(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A store that fails for a while with an error that names no value (a server gone
    read-only in a failover) must not make the worker dead-letter the outcome: it is kept
    and stored once the store takes it."""
    request.param = store
    url = store_url(request, tmp_path)
    hiccup = RuntimeError("cannot execute UPDATE in a read-only transaction")
    refusing = RefusingStore(open_backend(url), b"text", hiccup, times=3)
    app = Offload(url, backend=refusing, default_retries=0)  # type: ignore[arg-type]

    @app.task
    def echo(text: str) -> str:
        return text

    try:
        jobs = [echo.enqueue(f"text {n}") for n in range(5)]
        with WorkerThread(app, concurrency=5):
            for job in jobs:
                assert job.result(timeout=30).startswith("text")
        assert refusing.refused_calls == 3
        assert all(job.refresh().state is JobState.SUCCEEDED for job in jobs)
    finally:
        app.close()


def test_error_info_survives_a_broken_str() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert isinstance(outcomes.error_info(Broken()), ErrorInfo)


@pytest.mark.parametrize("value", [math.nan, math.inf, [1.0, {"x": -math.inf}]])
def test_a_result_json_cannot_hold_fails_its_job_clearly(value: object) -> None:
    """JSON has no NaN: stored as null it would read back as another value."""
    app = Offload("memory://", default_retries=0)

    @app.task
    def compute() -> object:
        return value

    try:
        job = compute.enqueue()
        WorkerThread(app, burst=True).__enter__().join()
        record = job.refresh().record
        assert record.state is JobState.DEAD
        assert record.error is not None and "NaN or infinity" in record.error.message
    finally:
        app.close()
