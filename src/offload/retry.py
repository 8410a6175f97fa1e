"""Backoff policies: how long a failed job waits before its next attempt."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@runtime_checkable
class BackoffPolicy(Protocol):
    def delay_s(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ...


@dataclass(frozen=True)
class ExponentialBackoff:
    """Exponential with full jitter: retries of many jobs that failed together spread out."""

    base_s: float = 1.0
    max_s: float = 600.0
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.base_s) and math.isfinite(self.max_s)):
            raise ValueError("backoff times must be finite")
        if self.base_s < 0 or self.max_s < 0:
            raise ValueError("backoff times must not be negative")

    def delay_s(self, attempt: int) -> float:
        ceiling = min(self.max_s, self.base_s * 2 ** min(max(attempt - 1, 0), 62))
        return self.rng.uniform(0, ceiling) if self.jitter else ceiling


@dataclass(frozen=True)
class FixedBackoff:
    seconds: float

    def delay_s(self, attempt: int) -> float:
        return self.seconds


@dataclass(frozen=True)
class CallableBackoff:
    fn: Callable[[int], float]

    def delay_s(self, attempt: int) -> float:
        return max(0.0, float(self.fn(attempt)))


Backoff = BackoffPolicy | Callable[[int], float] | float | int


def as_policy(backoff: Backoff | None) -> BackoffPolicy:
    if backoff is None:
        return ExponentialBackoff()
    if isinstance(backoff, BackoffPolicy):
        return backoff
    if isinstance(backoff, bool):
        raise TypeError("backoff must be a number of seconds, a policy or a callable, not a bool")
    if isinstance(backoff, int | float):
        if not math.isfinite(backoff) or backoff < 0:
            raise ValueError(f"backoff must be finite and not negative, got {backoff!r}")
        return FixedBackoff(float(backoff))
    if callable(backoff):
        return CallableBackoff(backoff)
    raise TypeError(
        f"backoff must be a policy, a callable (attempt) -> seconds or a number, not {backoff!r}"
    )
