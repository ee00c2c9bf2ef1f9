from __future__ import annotations

from collections import Counter

import pytest

from livebatch.batches.schemas import DifficultyDistribution
from livebatch.batches.service import assign_difficulties


@pytest.mark.parametrize(
    ("count", "mix", "expected"),
    [
        (20, (30, 50, 20), {"easy": 6, "medium": 10, "hard": 4}),
        (1, (30, 50, 20), {"medium": 1}),
        (3, (34, 33, 33), {"easy": 1, "medium": 1, "hard": 1}),
        (7, (100, 0, 0), {"easy": 7}),
        (10, (15, 15, 70), {"easy": 2, "medium": 1, "hard": 7}),
    ],
)
def test_counts_follow_the_mix(count: int, mix: tuple[int, int, int], expected: dict[str, int]) -> None:
    easy, medium, hard = mix
    assigned = assign_difficulties(count, DifficultyDistribution(easy=easy, medium=medium, hard=hard))
    assert len(assigned) == count
    assert dict(Counter(assigned)) == expected


def test_any_prefix_is_close_to_the_mix() -> None:
    assigned = assign_difficulties(100, DifficultyDistribution(easy=30, medium=50, hard=20))
    first_ten = Counter(assigned[:10])
    assert first_ten == {"easy": 3, "medium": 5, "hard": 2}
