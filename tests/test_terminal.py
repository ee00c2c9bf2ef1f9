"""What the terminal shows of a snapshot: every count, so that they add up to the batch."""

from __future__ import annotations

from typing import Any

import pytest

from livebatch.terminal import format_counts

BRIEF = {  # the brief's second snapshot, with the field livebatch adds
    "completedItems": 12,
    "failedItems": 1,
    "inProgressItems": 5,
    "pendingItems": 2,
    "cancelledItems": 0,
    "estimatedTimeRemainingMs": 116_667,
    "throughputRate": 3.6,
}
CANCELLED = {"completedItems": 2, "failedItems": 0, "inProgressItems": 0, "pendingItems": 0, "cancelledItems": 4}


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        (BRIEF, "12 completed · 5 running · 1 failed · 2 pending · 3.6/min · ETA 1m 57s"),
        (
            BRIEF | CANCELLED | {"estimatedTimeRemainingMs": 0},
            "2 completed · 0 running · 0 failed · 0 pending · 4 cancelled · 3.6/min · ETA —",
        ),
        (
            {k: v for k, v in BRIEF.items() if k != "cancelledItems"},  # a server from before `cancelledItems`
            "12 completed · 5 running · 1 failed · 2 pending · 3.6/min · ETA 1m 57s",
        ),
    ],
)
def test_counts_show_cancelled_items_once_there_are_any(snapshot: dict[str, Any], expected: str) -> None:
    assert format_counts(snapshot) == expected
