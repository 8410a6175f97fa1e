"""Numbers a caller gives are refused at the call site, with the accepted range, when they
are NaN, infinite or absurdly large: never half-stored, never a raw driver error."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from offload import Offload
from offload.backends.base import QueryParams
from offload.errors import ConfigurationError

BAD_SECONDS = [math.nan, math.inf, -math.inf, 1e14, -1.0]


@pytest.fixture
def app(store_url: str) -> Any:
    application = Offload(store_url)
    yield application
    application.close()


def stored(app: Offload) -> int:
    return len(app.backend.blocking.query(QueryParams()).jobs)


@pytest.mark.parametrize("delay", [*BAD_SECONDS, timedelta(days=1e6)])
def test_a_bad_delay_is_refused_with_its_range(app: Offload, delay: Any) -> None:
    @app.task
    def work(n: int) -> int:
        return n

    with pytest.raises(ConfigurationError, match=r"delay must be a finite number in \[0, "):
        work.options(delay=delay).enqueue(1)
    with pytest.raises(ConfigurationError, match="delay must be a finite number"):
        work.enqueue_many([work.s(1), work.options(delay=delay).s(2)])
    with pytest.raises(ConfigurationError, match="delay must be a finite number"):
        app.batch([work.s(1), work.options(delay=delay).s(2)])
    assert stored(app) == 0


@pytest.mark.parametrize("run_at", [math.nan, math.inf, 1e300, -5.0])
def test_a_bad_run_at_is_refused(app: Offload, run_at: float) -> None:
    @app.task
    def work(n: int) -> int:
        return n

    with pytest.raises(ConfigurationError, match="run_at must be a finite number"):
        work.options(run_at=run_at).enqueue(1)
    assert stored(app) == 0


@pytest.mark.parametrize("priority", [2**40, -(2**40), True, 1.5])
def test_a_bad_priority_is_refused(app: Offload, priority: Any) -> None:
    @app.task
    def work(n: int) -> int:
        return n

    with pytest.raises(ConfigurationError, match=r"priority must be an int in \[-1000000"):
        work.options(priority=priority).enqueue(1)
    with pytest.raises(ConfigurationError, match="priority must be an int in"):
        app.task(name="other", priority=priority)(lambda: None)
    assert stored(app) == 0


@pytest.mark.parametrize("label", ["timeout_s", "lease_s"])
@pytest.mark.parametrize("value", [*BAD_SECONDS, 0.0])
def test_bad_task_durations_are_refused(label: str, value: float) -> None:
    app = Offload("memory://")
    with pytest.raises(ConfigurationError, match=f"{label} must be a finite number in"):
        app.task(**{label: value})(lambda: None)


@pytest.mark.parametrize(
    "options",
    [
        {"lease_s": math.nan},
        {"lease_s": 1e14},
        {"retention_s": math.inf},
        {"default_retries": 10**12},
        {"max_crashes": 0},
    ],
)
def test_bad_app_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="must be"):
        Offload("memory://", **options)


def test_bad_batch_wait_is_refused() -> None:
    app = Offload("memory://")
    with pytest.raises(ConfigurationError, match="batch_wait_s must be a number >= 0 and at most"):

        @app.task(batch_size=10, batch_wait_s=math.nan)
        def embed(texts: list[str]) -> list[int]:
            return [len(t) for t in texts]
