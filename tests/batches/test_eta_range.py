"""The ETA as a range (batches/eta_range.py): tables over windows built the way the pipeline builds them, on
the active clock with fixed times, from the first completions to a paused batch and a throughput that
shifts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from livebatch.batches import progress
from livebatch.batches.eta_range import eta_range_ms

T0 = datetime(2026, 2, 19, 12, 0, 0)
GAP_FOR_3_6_PER_MIN = 16_667  # the brief's throughput: 10 completions 16.67 s apart


def completions(
    gaps_s: Sequence[float], *, pause_after: int | None = None, pause: timedelta = timedelta(0)
) -> list[int]:
    """The window after completions `gaps_s` seconds apart (wall clock, from T0), paused for `pause` after the
    `pause_after`-th: built with the pipeline's own functions, as the batch row keeps it."""
    window, active, since, wall = [0], 0, T0, T0
    for n, gap in enumerate(gaps_s, start=1):
        wall += timedelta(seconds=gap)
        window = progress.push_completion(window, progress.active_clock_ms(active, since, wall))
        if n == pause_after:
            active = progress.active_clock_ms(active, since, wall)  # paused: the active clock stops
            wall += pause
            since = wall  # resumed
    return window


def eta(left: int, window: list[int]) -> tuple[int, tuple[int, int] | None]:
    """(point ETA, range) as a snapshot computes them."""
    point = progress.estimate_ms(left, window, concurrency=4, item_prior_ms=30_000)
    return point, eta_range_ms(left, window, point_ms=point)


@pytest.mark.parametrize(
    ("left", "gaps_s", "point", "expected"),
    [
        # The brief's second snapshot: 7 left at 3.6/min. Even gaps, but ten of them only: about 1.5-2.5 min.
        (7, [16.667] * 10, 116_669, (87_474, 149_028)),
        # Nothing completed yet: no interval to measure a spread on, so no range ("estimating…").
        (20, [], 150_000, None),
        # Nothing left: nothing to estimate.
        (0, [16.667] * 10, 0, (0, 0)),
        # The first completion: one interval, so the spread is that of a Poisson process: wide.
        (19, [30.0], 570_000, (134_196, 1_179_499)),
        # The second: two intervals that agree narrow it a little.
        (18, [30.0, 30.0], 540_000, (224_677, 947_087)),
        # The last item: the range of one more interval.
        (1, [10.0] * 10, 10_000, (5_281, 15_779)),
    ],
)
def test_the_range_from_the_first_completions_to_the_last_item(
    left: int, gaps_s: list[float], point: int, expected: tuple[int, int] | None
) -> None:
    window = completions(gaps_s)
    assert eta(left, window) == (point, expected)


def test_a_pause_changes_nothing_of_the_range_and_neither_does_the_time_it_is_read() -> None:
    """Completions 12 s apart with an hour's pause after the fifth: on the active clock, the same window as
    without the pause; and the range is a function of the window alone, so reading it during the pause (or
    a day later) gives the same."""
    steady = completions([12.0] * 10)
    paused = completions([12.0] * 10, pause_after=5, pause=timedelta(hours=1))
    assert paused == steady
    assert eta(30, paused) == eta(30, steady) == (360_000, (291_716, 433_752))


@pytest.mark.parametrize(
    ("gaps_s", "point", "expected"),
    [
        ([20.0] * 10, 400_000, (319_830, 486_984)),  # steady at 3/min
        ([20.0] * 5 + [5.0] * 5, 250_000, (170_207, 341_148)),  # shifting to 12/min: both rates in one window
        ([20.0] * 5 + [5.0] * 10, 100_000, (79_957, 121_746)),  # the window holds the new rate only
    ],
)
def test_a_throughput_that_shifts_widens_the_range_until_the_window_holds_the_new_rate(
    gaps_s: list[float], point: int, expected: tuple[int, int]
) -> None:
    assert eta(20, completions(gaps_s)) == (point, expected)


def test_the_range_is_narrower_for_steady_completions_than_for_erratic_ones_of_the_same_rate() -> None:
    steady = eta_range_ms(40, completions([10.0] * 10), point_ms=400_000)
    erratic = eta_range_ms(40, completions([1.0, 19.0] * 5), point_ms=400_000)
    assert steady is not None and erratic is not None
    assert erratic[0] < steady[0] < 400_000 < steady[1] < erratic[1]


@pytest.mark.parametrize(
    "gaps_s",
    [[16.667] * 10, [30.0], [1.0, 19.0] * 5, [0.0] * 10, [0.001, 600.0], [5.0] * 3 + [400.0]],
)
def test_the_range_holds_the_point_eta_and_grows_with_the_items_left(gaps_s: list[float]) -> None:
    window = completions(gaps_s)
    previous = (0, 0)
    for left in (1, 2, 5, 20, 100, 1000):
        point, bounds = eta(left, window)
        assert bounds is not None
        low, high = bounds
        assert 1 <= low <= point <= high, (left, point, bounds)
        assert low >= previous[0] and high >= previous[1], "more items left never take less time"
        previous = bounds
