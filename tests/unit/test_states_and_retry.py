"""Unit tests of the pure decision code: states, backoff policies and attempt outcomes."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload.backends.base import OutcomeKind
from offload.errors import Abort, Retry
from offload.records import ErrorInfo, JobRecord
from offload.retry import (
    BackoffPolicy,
    CallableBackoff,
    ExponentialBackoff,
    FixedBackoff,
    as_policy,
)
from offload.states import (
    CANCELLABLE_STATES,
    KEY_HOLDING_STATES,
    RETRYABLE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    InvalidTransition,
    JobState,
    check_transition,
)
from offload.worker.outcomes import (
    MAX_TRACEBACK_CHARS,
    Failure,
    describe_failure,
    error_info,
    failed,
    poison,
    released,
    succeeded,
)

S = JobState

# The transitions of the README's "States", written out independently of TRANSITIONS.
# A due scheduled job may be claimed directly (it passes through queued in the same step).
DESIGN_TRANSITIONS = {
    (S.SCHEDULED, S.QUEUED),  # run_at reached
    (S.SCHEDULED, S.RUNNING),  # claimed when due
    (S.QUEUED, S.RUNNING),  # claimed
    (S.RUNNING, S.SUCCEEDED),  # ok
    (S.RUNNING, S.SCHEDULED),  # error, attempts left
    (S.RUNNING, S.DEAD),  # error, none left / poison
    (S.RUNNING, S.QUEUED),  # lease expired, or released at shutdown
    (S.SCHEDULED, S.CANCELLED),
    (S.QUEUED, S.CANCELLED),
    (S.RUNNING, S.CANCELLED),
    (S.DEAD, S.QUEUED),  # retry by a person
    (S.CANCELLED, S.QUEUED),  # retry by a person
}
ALL_PAIRS = list(itertools.product(JobState, repeat=2))


# -- states -------------------------------------------------------------------
def test_transitions_table_matches_the_design() -> None:
    table = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert table == DESIGN_TRANSITIONS
    assert set(TRANSITIONS) == set(JobState)


@pytest.mark.parametrize(("source", "target"), sorted(DESIGN_TRANSITIONS))
def test_check_transition_accepts_allowed_pairs(source: JobState, target: JobState) -> None:
    check_transition(source, target)  # does not raise


@pytest.mark.parametrize(
    ("source", "target"), [p for p in ALL_PAIRS if p not in DESIGN_TRANSITIONS]
)
def test_check_transition_rejects_every_other_pair(source: JobState, target: JobState) -> None:
    with pytest.raises(InvalidTransition) as info:
        check_transition(source, target)
    assert isinstance(info.value, ValueError)
    assert source.value in str(info.value) and target.value in str(info.value)


@pytest.mark.parametrize("state", list(JobState))
def test_no_state_transitions_to_itself(state: JobState) -> None:
    with pytest.raises(InvalidTransition):
        check_transition(state, state)


def test_terminal_states() -> None:
    assert TERMINAL_STATES == {S.SUCCEEDED, S.DEAD, S.CANCELLED}
    for state in JobState:
        assert state.is_terminal is (state in TERMINAL_STATES)
    # succeeded is final; dead and cancelled only leave through a person's retry.
    assert TRANSITIONS[S.SUCCEEDED] == frozenset()
    assert TRANSITIONS[S.DEAD] == TRANSITIONS[S.CANCELLED] == frozenset({S.QUEUED})
    assert RETRYABLE_STATES == {S.DEAD, S.CANCELLED}


def test_state_groups_are_consistent() -> None:
    # A unique key is held exactly while the job is not finished, and those jobs can be cancelled.
    assert KEY_HOLDING_STATES == set(JobState) - TERMINAL_STATES
    assert CANCELLABLE_STATES == KEY_HOLDING_STATES
    for state in CANCELLABLE_STATES:
        assert S.CANCELLED in TRANSITIONS[state]
    for state in RETRYABLE_STATES:
        assert S.QUEUED in TRANSITIONS[state]


def test_states_are_their_stored_strings() -> None:
    assert [s.value for s in JobState] == [
        "scheduled",
        "queued",
        "running",
        "succeeded",
        "dead",
        "cancelled",
    ]
    assert JobState("running") is S.RUNNING
    assert S.DEAD == "dead"


# -- backoff policies ---------------------------------------------------------
def test_exponential_without_jitter_doubles_then_caps() -> None:
    policy = ExponentialBackoff(base_s=1.0, max_s=600.0, jitter=False)
    delays = [policy.delay_s(n) for n in range(1, 13)]
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]


def test_exponential_first_attempt_is_base_and_huge_attempts_do_not_overflow() -> None:
    policy = ExponentialBackoff(base_s=0.5, max_s=30.0, jitter=False)
    assert policy.delay_s(1) == 0.5
    assert policy.delay_s(0) == 0.5  # attempt numbers are 1-based; 0 is treated as the first
    assert policy.delay_s(10**6) == 30.0
    assert policy.delay_s(2**70) == 30.0


@settings(max_examples=200, deadline=None)
@given(
    # The exponent stops at 62 (no overflow), so a base so tiny that base * 2**62 stays under
    # the cap would stop doubling: bases start at a millisecond.
    base=st.just(0.0) | st.floats(0.001, 100),
    cap=st.floats(0, 1e6),
    attempt=st.integers(1, 200),
)
def test_exponential_without_jitter_property(base: float, cap: float, attempt: int) -> None:
    policy = ExponentialBackoff(base_s=base, max_s=cap, jitter=False)
    current, following = policy.delay_s(attempt), policy.delay_s(attempt + 1)
    assert 0 <= current <= cap
    assert following == min(cap, 2 * current)  # doubles until it reaches the cap
    assert current <= following


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    base=st.floats(0.001, 100, allow_nan=False),
    cap=st.floats(0, 1e4, allow_nan=False),
    attempt=st.integers(1, 80),
)
def test_exponential_jitter_stays_within_zero_and_ceiling(
    seed: int, base: float, cap: float, attempt: int
) -> None:
    ceiling = ExponentialBackoff(base_s=base, max_s=cap, jitter=False).delay_s(attempt)
    policy = ExponentialBackoff(base_s=base, max_s=cap, rng=random.Random(seed))
    for _ in range(20):
        assert 0 <= policy.delay_s(attempt) <= ceiling


def test_exponential_jitter_is_seeded_and_spreads() -> None:
    first = ExponentialBackoff(base_s=1.0, max_s=100.0, rng=random.Random(7))
    second = ExponentialBackoff(base_s=1.0, max_s=100.0, rng=random.Random(7))
    a = [first.delay_s(8) for _ in range(50)]
    b = [second.delay_s(8) for _ in range(50)]
    assert a == b  # same seed, same delays
    assert len(set(a)) == 50  # full jitter: jobs that failed together do not retry together
    assert min(a) < 50 < max(a)  # spread over [0, 100]


def test_jitter_is_on_by_default() -> None:
    policy = ExponentialBackoff(rng=random.Random(1))
    assert policy.jitter
    assert len({policy.delay_s(10) for _ in range(10)}) > 1


@pytest.mark.parametrize(("base", "cap"), [(-1.0, 10.0), (1.0, -10.0)])
def test_exponential_rejects_negative_times(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="negative"):
        ExponentialBackoff(base_s=base, max_s=cap)


@pytest.mark.parametrize("attempt", [0, 1, 2, 5, 1000])
def test_fixed_backoff(attempt: int) -> None:
    assert FixedBackoff(3.5).delay_s(attempt) == 3.5


def test_callable_backoff_gets_the_attempt_and_clamps_to_zero() -> None:
    seen: list[int] = []

    def fn(attempt: int) -> float:
        seen.append(attempt)
        return 10 - attempt * 4

    policy = CallableBackoff(fn)
    assert policy.delay_s(1) == 6.0
    assert policy.delay_s(3) == 0.0  # -2 seconds is no wait, not time travel
    assert seen == [1, 3]
    assert isinstance(policy.delay_s(1), float)


def test_as_policy_none_is_exponential_with_jitter() -> None:
    policy = as_policy(None)
    assert isinstance(policy, ExponentialBackoff)
    assert policy.jitter


@pytest.mark.parametrize(("value", "seconds"), [(5, 5.0), (0, 0.0), (2.5, 2.5), (0.0, 0.0)])
def test_as_policy_numbers_are_fixed_delays(value: float, seconds: float) -> None:
    policy = as_policy(value)
    assert isinstance(policy, FixedBackoff)
    assert policy.delay_s(1) == policy.delay_s(9) == seconds
    assert isinstance(policy.delay_s(1), float)


def test_as_policy_keeps_policies_as_they_are() -> None:
    for policy in (
        ExponentialBackoff(jitter=False),
        FixedBackoff(1.0),
        CallableBackoff(lambda n: n),
    ):
        assert as_policy(policy) is policy

    class Custom:
        def delay_s(self, attempt: int) -> float:
            return 42.0

    custom = Custom()
    assert isinstance(custom, BackoffPolicy)
    assert as_policy(custom) is custom


def test_as_policy_wraps_callables() -> None:
    policy = as_policy(lambda attempt: attempt * 1.5)
    assert isinstance(policy, CallableBackoff)
    assert policy.delay_s(2) == 3.0


@pytest.mark.parametrize("value", ["5", b"5", [1, 2], {"s": 1}, object(), (1,)])
def test_as_policy_rejects_garbage_with_type_error(value: object) -> None:
    with pytest.raises(TypeError, match="backoff must be"):
        as_policy(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, -0.5])
def test_as_policy_rejects_negative_numbers(value: float) -> None:
    with pytest.raises(ValueError, match="negative"):
        as_policy(value)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_as_policy_rejects_non_finite_numbers(value: float) -> None:
    """``@app.task(backoff=nan)`` must fail where it is written.

    NaN slips past ``backoff < 0`` and ``failed`` turns it into ``max(0.0, nan) == 0.0``: every
    retry runs at once. Infinity schedules the retry at ``run_at = inf``: the job never runs
    again and holds its unique key for ever.
    """
    with pytest.raises(ValueError):
        as_policy(value)


# -- outcomes -----------------------------------------------------------------
def job(attempt: int, max_attempts: int, delivery: int = 4) -> JobRecord:
    return JobRecord(
        id="job-1",
        task="t",
        queue="default",
        state=JobState.RUNNING,
        payload=b"{}",
        attempt=attempt,
        max_attempts=max_attempts,
        delivery=delivery,
    )


BACKOFF = ExponentialBackoff(base_s=2.0, max_s=60.0, jitter=False)


def boom(exc: BaseException) -> BaseException:
    """Return ``exc`` after raising it, so it carries a traceback like a task's error."""
    try:
        raise exc
    except BaseException as caught:
        return caught


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 5])
def test_failed_retries_while_attempts_are_left_then_dies(max_attempts: int) -> None:
    failure = describe_failure(boom(RuntimeError("flaky")), (RuntimeError,))
    for attempt in range(1, max_attempts + 2):
        outcome = failed(job(attempt, max_attempts), failure, BACKOFF)
        assert outcome.id == "job-1"
        assert outcome.delivery == 4  # the fencing token of this claim
        assert outcome.error is not None and outcome.error.type == "RuntimeError"
        if attempt < max_attempts:
            assert outcome.kind is OutcomeKind.RETRY
            assert outcome.retry_delay_s == BACKOFF.delay_s(attempt)
        else:
            assert outcome.kind is OutcomeKind.DEAD
            assert outcome.retry_delay_s == 0.0


def test_failed_uses_the_backoff_of_this_attempt() -> None:
    failure = describe_failure(boom(OSError("down")), (OSError,))
    delays = [failed(job(n, 10), failure, BACKOFF).retry_delay_s for n in range(1, 8)]
    assert delays == [2, 4, 8, 16, 32, 60, 60]


def test_failed_without_a_backoff_policy_is_dead() -> None:
    failure = describe_failure(boom(RuntimeError("x")), (RuntimeError,))
    assert failed(job(1, 5), failure, None).kind is OutcomeKind.DEAD


def test_retry_exception_delay_is_honoured() -> None:
    failure = describe_failure(Retry("rate limited", delay_s=7.5), ())
    assert failure.retryable  # Retry asks for another attempt even when retry_on is empty
    assert failure.delay_s == 7.5
    outcome = failed(job(1, 3), failure, BACKOFF)
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.retry_delay_s == 7.5  # not BACKOFF's 2 s
    assert outcome.error == ErrorInfo(type="Retry", message="rate limited", traceback=None)


def test_retry_exception_without_delay_uses_the_backoff() -> None:
    failure = describe_failure(Retry(), ())
    assert failure.delay_s is None
    outcome = failed(job(3, 5), failure, BACKOFF)
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.retry_delay_s == BACKOFF.delay_s(3)
    assert outcome.error is not None and outcome.error.message == "retry requested"


def test_retry_exception_negative_delay_is_no_wait() -> None:
    outcome = failed(job(1, 3), describe_failure(Retry(delay_s=-5), ()), BACKOFF)
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.retry_delay_s == 0.0


def test_retry_exception_on_the_last_attempt_is_dead() -> None:
    outcome = failed(job(3, 3), describe_failure(Retry(delay_s=1), ()), BACKOFF)
    assert outcome.kind is OutcomeKind.DEAD


def test_abort_is_dead_at_once() -> None:
    failure = describe_failure(boom(Abort("invalid input")), (Exception,))
    assert not failure.retryable
    outcome = failed(job(1, 10), failure, BACKOFF)
    assert outcome.kind is OutcomeKind.DEAD
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.message) == ("Abort", "invalid input")
    assert outcome.error.traceback is not None and "Abort: invalid input" in outcome.error.traceback


def test_exception_outside_retry_on_is_dead() -> None:
    failure = describe_failure(boom(KeyError("k")), (OSError, TimeoutError))
    assert not failure.retryable
    assert failed(job(1, 10), failure, BACKOFF).kind is OutcomeKind.DEAD


def test_retry_on_matches_subclasses() -> None:
    failure = describe_failure(boom(ConnectionResetError("reset")), (OSError,))
    assert failure.retryable
    assert failed(job(1, 2), failure, BACKOFF).kind is OutcomeKind.RETRY


def test_empty_retry_on_never_retries_ordinary_errors() -> None:
    failure = describe_failure(boom(ValueError("bad")), ())
    assert failed(job(1, 10), failure, BACKOFF).kind is OutcomeKind.DEAD


def test_failed_with_an_explicit_failure() -> None:
    info = ErrorInfo(type="X", message="y")
    outcome = failed(job(1, 2), Failure(info, retryable=True, delay_s=0.0), BACKOFF)
    assert (outcome.kind, outcome.retry_delay_s, outcome.error) == (OutcomeKind.RETRY, 0.0, info)


def test_poison_is_dead_with_the_given_error() -> None:
    outcome = poison(job(1, 10, delivery=9), "UnknownTask", "no task named 'x' is registered")
    assert outcome.kind is OutcomeKind.DEAD
    assert outcome.delivery == 9
    assert outcome.error == ErrorInfo(type="UnknownTask", message="no task named 'x' is registered")


def test_succeeded_and_released_carry_the_token() -> None:
    done = succeeded(job(1, 1, delivery=3), b'{"ok":1}')
    assert (done.kind, done.result, done.delivery, done.error) == (
        OutcomeKind.SUCCEEDED,
        b'{"ok":1}',
        3,
        None,
    )
    back = released(job(1, 1, delivery=3))
    assert (back.kind, back.delivery) == (OutcomeKind.RELEASE, 3)


def test_error_info_message_and_traceback() -> None:
    info = error_info(boom(RuntimeError()))
    assert info.type == "RuntimeError"
    assert info.message == "RuntimeError"  # an empty message still says something
    assert info.traceback is not None and "RuntimeError" in info.traceback
    assert error_info(RuntimeError("x"), with_traceback=False).traceback is None


def test_error_info_truncates_long_tracebacks_keeping_the_end() -> None:
    info = error_info(boom(RuntimeError("x" * (MAX_TRACEBACK_CHARS * 2) + "END")))
    assert info.traceback is not None
    assert len(info.traceback) == MAX_TRACEBACK_CHARS
    assert info.traceback.rstrip().endswith("END")
