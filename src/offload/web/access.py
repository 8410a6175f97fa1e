"""Who is calling: a bearer token's owner and role, or nobody (refused).

Failed attempts are counted per client address and, past a limit, refused for a while
before the token is even looked up: guessing tokens costs the guesser, not the store.
The count lives in this process (each server process counts its own).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from fastapi import HTTPException, Request

from offload.tokens import Role, TokenInfo

#: Failed authentications one client address may make per window before it must wait.
MAX_FAILURES = 20
FAILURE_WINDOW_S = 60.0
#: Addresses remembered at most; the oldest are forgotten first.
MAX_ADDRESSES = 10_000


@dataclass(frozen=True)
class Caller:
    """The owner a request acts for (None: every owner) and what it may do."""

    owner: str | None
    role: Role
    token_id: str | None = None

    @property
    def scope(self) -> str | None:
        """The owner whose jobs this caller sees, or None for every owner's."""
        return None if self.role.sees_all_owners else self.owner

    def require_action(self, what: str) -> None:
        if not self.role.can_act:
            raise HTTPException(403, f"a {self.role.value} token cannot {what}")

    def require_staff(self, what: str) -> None:
        """Queues, workers and schedules are everyone's: operators and admins only."""
        if not self.role.sees_all_owners:
            raise HTTPException(
                403, f"a {self.role.value} token cannot {what}: use an operator or admin token"
            )


NOBODY_CHECKS = Caller(owner=None, role=Role.ADMIN)


class FailureLimiter:
    """Recent failed authentications per client address."""

    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = FAILURE_WINDOW_S):
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str, now_s: float) -> deque[float]:
        times = self._failures.get(address)
        if times is None:
            return deque()
        while times and times[0] <= now_s - self.window_s:
            times.popleft()
        if not times:
            del self._failures[address]
        return times

    def wait_s(self, address: str) -> float:
        """Seconds this address must wait before trying again (0: it may try now)."""
        now_s = time.monotonic()
        times = self._recent(address, now_s)
        if len(times) < self.max_failures:
            return 0.0
        return max(times[0] + self.window_s - now_s, 1.0)

    def forgive(self, address: str) -> None:
        """Take back the newest failure (an attempt counted before it was checked, that
        turned out right)."""
        times = self._failures.get(address)
        if times:
            times.pop()
            if not times:
                del self._failures[address]

    def failed(self, address: str) -> None:
        if address not in self._failures and len(self._failures) >= MAX_ADDRESSES:
            del self._failures[next(iter(self._failures))]
        self._failures.setdefault(address, deque()).append(time.monotonic())


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def caller_of(info: TokenInfo) -> Caller:
    return Caller(owner=info.owner, role=info.role, token_id=info.id)


def refused(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def too_many(wait_s: float) -> HTTPException:
    return HTTPException(
        429,
        "too many failed authentications from this address; wait, then use a valid token",
        headers={"Retry-After": str(int(wait_s) + 1)},
    )
