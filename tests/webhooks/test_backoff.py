"""When a failed webhook delivery is tried again (webhooks/backoff.py)."""

from __future__ import annotations

import random

import pytest

from livebatch.webhooks.backoff import ceiling_s, delay_s, retry_after_s, schedule


@pytest.mark.parametrize(
    ("attempt", "base_s", "cap_s", "ceiling"),
    [
        (1, 10, 3600, 10),
        (2, 10, 3600, 20),
        (3, 10, 3600, 40),
        (9, 10, 3600, 2560),
        (10, 10, 3600, 3600),  # capped
        (40, 10, 3600, 3600),  # no overflow, however late
        (1, 0.2, 1, 0.2),
        (4, 0.2, 1, 1),
        (0, 10, 3600, 10),  # before any attempt: the first step
    ],
)
def test_the_ceiling_doubles_per_attempt_up_to_the_cap(
    attempt: int, base_s: float, cap_s: float, ceiling: float
) -> None:
    assert ceiling_s(attempt, base_s=base_s, cap_s=cap_s) == ceiling


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 12])
def test_a_delay_is_between_half_and_all_of_its_ceiling(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling = ceiling_s(attempt, base_s=10, cap_s=3600)
    delays = [delay_s(attempt, base_s=10, cap_s=3600, rng=rng) for _ in range(500)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert max(delays) - min(delays) > ceiling / 4, "the jitter spreads retries out"


def test_the_last_attempt_has_no_retry() -> None:
    rng = random.Random(0)
    assert retry_after_s(9, max_attempts=10, base_s=10, cap_s=3600, rng=rng) is not None
    assert retry_after_s(10, max_attempts=10, base_s=10, cap_s=3600, rng=rng) is None
    assert retry_after_s(1, max_attempts=1, base_s=10, cap_s=3600, rng=rng) is None


def test_the_default_schedule_as_the_readme_shows_it() -> None:
    assert schedule(10, base_s=10, cap_s=3600) == [
        (5, 10),
        (10, 20),
        (20, 40),
        (40, 80),
        (80, 160),
        (160, 320),
        (320, 640),
        (640, 1280),
        (1280, 2560),
    ]
    assert schedule(1, base_s=10, cap_s=3600) == []
