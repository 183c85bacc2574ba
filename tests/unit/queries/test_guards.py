"""The circuit breaker's states and the bulkheads, on a clock the test moves."""

from __future__ import annotations

import pytest

from cqrskit import CircuitOpen, Overloaded
from cqrskit.queries import Breaker, BreakerPolicy, Bulkhead

POLICY = BreakerPolicy(window=10, min_calls=4, failure_rate=0.5, open_for=3.0, half_open_calls=2)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock) -> Breaker:
    return Breaker("orders", POLICY, clock)


def outcomes(b: Breaker, *oks: bool) -> None:
    for ok in oks:
        b.admit()
        b.record(ok)


def test_no_verdict_before_min_calls_then_it_opens_at_the_failure_rate() -> None:
    b = breaker(Clock())
    outcomes(b, False, False, False)  # three failures, but fewer than min_calls
    assert b.state == "closed"
    outcomes(b, False)
    assert b.state == "open"
    with pytest.raises(CircuitOpen) as refused:
        b.admit()
    assert refused.value.failures == 4
    assert refused.value.calls == 4
    assert 0 < refused.value.retry_after <= 3.0


def test_failures_spread_below_the_rate_keep_it_closed() -> None:
    b = breaker(Clock())
    outcomes(b, True, False, True, True, False, True, True, True, False, True)  # 3 of 10
    assert b.state == "closed"
    outcomes(b, False, False)  # the window slides: 4 of the last 10
    assert b.state == "closed"
    outcomes(b, False)  # and now 5 of the last 10
    assert b.state == "open"


def test_the_caller_s_own_errors_do_not_open_it() -> None:
    b = breaker(Clock())
    outcomes(b, *[True] * 20)  # what the bus records for a bad cursor, say
    assert b.state == "closed"


def test_it_half_opens_after_its_wait_lets_a_few_through_and_closes_when_they_pass() -> None:
    clock = Clock()
    b = breaker(clock)
    outcomes(b, False, False, False, False)
    clock.now += 2.9
    with pytest.raises(CircuitOpen):
        b.admit()
    clock.now += 0.2
    assert b.state == "half-open"
    b.admit()
    b.admit()
    with pytest.raises(CircuitOpen):
        b.admit()  # only half_open_calls trials at once
    b.record(True)
    assert b.state == "half-open"
    b.record(True)
    assert b.state == "closed"
    outcomes(b, False, False, False)  # the old failures were forgotten
    assert b.state == "closed"


def test_a_failed_trial_opens_it_again_for_a_whole_wait() -> None:
    clock = Clock()
    b = breaker(clock)
    outcomes(b, False, False, False, False)
    clock.now += 3.0
    b.admit()
    b.record(False)
    assert b.state == "open"
    clock.now += 2.0
    with pytest.raises(CircuitOpen):
        b.admit()
    clock.now += 1.0
    assert b.state == "half-open"


def test_a_bulkhead_refuses_past_its_limit_and_frees_its_places() -> None:
    bulkhead = Bulkhead("orders", "wait", 2, "read-your-writes waits")
    with bulkhead.slot(), bulkhead.slot():
        assert bulkhead.in_use == 2
        with pytest.raises(Overloaded) as refused, bulkhead.slot():
            pass
        assert "2 read-your-writes waits" in str(refused.value)
    assert bulkhead.in_use == 0
    with pytest.raises(RuntimeError), bulkhead.slot():
        raise RuntimeError("the read failed")
    assert bulkhead.in_use == 0


def test_reads_admitted_before_it_opened_are_not_counted_as_its_trials() -> None:
    """Regression: a slow read let through while closed, ending once half-open,
    passed for a trial, so the breaker closed on no trial at all."""
    clock = Clock()
    b = breaker(clock)
    slow = [b.admit(), b.admit()]  # two slow reads, let through while closed
    outcomes(b, False, False, False, False)
    clock.now += 3.0
    assert b.state == "half-open"
    for ticket in slow:
        b.record(True, ticket)  # they end now, their store calls made before it opened
    assert b.state == "half-open"
    outcomes(b, True, True)  # the trials themselves
    assert b.state == "closed"


def test_a_trial_that_ends_without_a_verdict_frees_its_place_and_passes_for_nothing() -> None:
    clock = Clock()
    b = breaker(clock)
    outcomes(b, False, False, False, False)
    clock.now += 3.0
    first, second = b.admit(), b.admit()
    b.release(first)  # cancelled: the store said nothing
    b.release(second)
    assert b.state == "half-open"
    outcomes(b, True, True)
    assert b.state == "closed"


def test_trials_that_never_end_do_not_hold_it_half_open_for_ever() -> None:
    """Regression: two trials hung (a blocking call with no end) took every trial
    place, and every read after them was refused, whatever the store did."""
    clock = Clock()
    b = breaker(clock)
    outcomes(b, False, False, False, False)
    clock.now += 3.0
    b.admit()
    b.admit()  # both hang
    with pytest.raises(CircuitOpen):
        b.admit()
    clock.now += 3.0  # a whole wait more: new trials may go
    ticket = b.admit()
    b.record(True, ticket)
    ticket = b.admit()
    b.record(True, ticket)
    assert b.state == "closed"
