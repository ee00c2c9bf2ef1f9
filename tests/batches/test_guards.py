"""The guards that pause a batch by themselves, as pure functions: the budget and the error-rate window."""

from __future__ import annotations

from typing import Any

import pytest

from livebatch.batches.guards import (
    ERROR_WINDOW,
    Budget,
    PauseReason,
    error_rate_guard_on,
    error_rate_tripped,
    recent_failures,
    record_outcome,
    trip,
)


def window_of(outcomes: str) -> str:
    """The guard's window after these outcomes (`x` failed, `.` succeeded), oldest first."""
    window = ""
    for outcome in outcomes:
        window = record_outcome(window, failed=outcome == "x")
    return window


@pytest.mark.parametrize(
    ("outcomes", "failures", "tripped"),
    [
        ("", 0, False),
        ("x" * 10, 10, False),  # 10 of the last 20: half, not more than half
        ("x" * 11, 11, True),  # fewer than 20 attempts so far, but 11 failed: more than half of a window
        ("." * 9 + "x" * 11, 11, True),
        ("x" * 11 + "." * 10, 10, False),  # the oldest failure has left the window
        ("x" * 40, 20, True),
        ("x." * 20, 10, False),  # every other attempt fails: half, never more
        (".x" * 5 + "xx" + ".x" * 5, 11, True),  # 22 attempts: the first two have left the window
    ],
)
def test_the_error_rate_guard_trips_at_more_than_half_of_the_last_20(
    outcomes: str, failures: int, tripped: bool
) -> None:
    window = window_of(outcomes)
    assert len(window) == min(len(outcomes), ERROR_WINDOW)
    assert (recent_failures(window), error_rate_tripped(window)) == (failures, tripped)


@pytest.mark.parametrize(
    ("config", "budget"),
    [
        ({}, Budget()),
        ({"budget": None}, Budget()),
        ({"budget": {"cost": 0.05, "tokens": None}}, Budget(cost_nanos=50_000_000)),
        ({"budget": {"cost": None, "tokens": 20_000}}, Budget(tokens=20_000)),
        ({"budget": {"cost": 5, "tokens": 1}}, Budget(cost_nanos=5_000_000_000, tokens=1)),
    ],
)
def test_a_budget_is_read_from_the_batch_config(config: dict[str, Any], budget: Budget) -> None:
    assert Budget.of(config) == budget
    assert budget.capped == (budget != Budget())


@pytest.mark.parametrize(
    ("budget", "tokens", "cost_nanos", "reached"),
    [
        (Budget(), 10**9, 10**15, False),  # no cap
        (Budget(tokens=1000), 999, 0, False),
        (Budget(tokens=1000), 1000, 0, True),  # reached at the cap, not only past it
        (Budget(cost_nanos=50_000_000), 10**9, 49_999_999, False),
        (Budget(cost_nanos=50_000_000), 0, 50_000_000, True),
        (Budget(cost_nanos=50_000_000, tokens=1000), 1000, 0, True),  # either cap
        (Budget(cost_nanos=50_000_000, tokens=1000), 10, 60_000_000, True),
    ],
)
def test_a_budget_is_reached_at_either_cap(budget: Budget, tokens: int, cost_nanos: int, reached: bool) -> None:
    assert budget.reached(tokens=tokens, cost_nanos=cost_nanos) is reached


@pytest.mark.parametrize(
    ("budget", "currency", "words"),
    [
        (Budget(cost_nanos=50_000_000), "USD", "0.05 USD"),
        (Budget(tokens=20_000), "EUR", "20000 tokens"),
        (Budget(cost_nanos=5_000_000_000, tokens=1), "EUR", "5 EUR or 1 tokens"),
        (Budget(), "USD", "none"),
    ],
)
def test_a_budget_in_words(budget: Budget, currency: str, words: str) -> None:
    assert budget.describe(currency) == words


@pytest.mark.parametrize(
    ("budget", "tokens", "outcomes", "guard", "reason"),
    [
        (Budget(), 0, "", True, None),
        (Budget(), 0, "x" * 11, True, "error_rate"),
        (Budget(), 0, "x" * 11, False, None),  # the guard is off for this batch
        (Budget(tokens=100), 100, "", True, "budget_reached"),
        (Budget(tokens=100), 100, "x" * 11, True, "budget_reached"),  # both: what was spent stays spent
        (Budget(tokens=100), 99, "x" * 11, True, "error_rate"),
    ],
)
def test_which_guard_trips(budget: Budget, tokens: int, outcomes: str, guard: bool, reason: PauseReason | None) -> None:
    assert trip(budget, tokens=tokens, cost_nanos=0, window=window_of(outcomes), error_rate_guard=guard) == reason


@pytest.mark.parametrize(
    ("config", "on"),
    [({}, True), ({"errorRateGuard": True}, True), ({"errorRateGuard": False}, False)],
)
def test_the_error_rate_guard_is_on_unless_the_config_turns_it_off(config: dict[str, Any], on: bool) -> None:
    assert error_rate_guard_on(config) is on
