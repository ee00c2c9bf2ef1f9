from __future__ import annotations

import random

import pytest

from livebatch.batches.retry import RetryPolicy


@pytest.mark.parametrize(
    ("attempt", "low", "high"), [(1, 500, 1000), (2, 1000, 2000), (3, 2000, 4000), (8, 30_000, 60_000)]
)
def test_delay_doubles_per_attempt_with_jitter_and_a_cap(attempt: int, low: int, high: int) -> None:
    policy = RetryPolicy(max_attempts=10, base_ms=1000, cap_ms=60_000, rng=random.Random(7))
    delays = {policy.delay_ms(attempt) for _ in range(200)}
    assert min(delays) >= low and max(delays) <= high
    assert len(delays) > 20  # jittered, not one fixed value


def test_retry_after_is_honoured_when_longer_than_the_backoff() -> None:
    policy = RetryPolicy(base_ms=100, cap_ms=1000, rng=random.Random(1))
    assert policy.delay_ms(1, retry_after_ms=5_000) == 5_000
    assert policy.delay_ms(1, retry_after_ms=1) >= 50


@pytest.mark.parametrize(("attempt", "expected"), [(1, True), (2, True), (3, False), (4, False)])
def test_will_retry_until_max_attempts(attempt: int, expected: bool) -> None:
    assert RetryPolicy(max_attempts=3).will_retry(attempt) is expected
