"""What the terminal shows of a snapshot: every count, so that they add up to the batch."""

from __future__ import annotations

from typing import Any

import pytest

from livebatch.terminal import fit_progress, format_counts, format_eta

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


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "—"), (45_400, "45s"), (330_000, "5m 30s"), (3_725_000, "1h 02m 05s")],  # the page's one format
)
def test_times_read_as_on_the_page(ms: int, text: str) -> None:
    assert format_eta(ms) == text


@pytest.mark.parametrize(
    ("width", "bar", "counts"),
    [
        (200, 40, "12 completed · 5 running · 1 failed · 2 pending · 3.6/min · ETA 1m 57s"),
        (100, 12, "12 done · 5 running · 1 failed · 2 pending · ETA 1m 57s"),
        (80, 24, "✓12 ◔5 ✕1 ○2 ETA 1m 57s"),
    ],
)
def test_the_progress_line_keeps_its_bar_and_every_count_as_the_terminal_narrows(
    width: int, bar: int, counts: str
) -> None:
    snapshot = BRIEF | {"totalItems": 20}
    assert fit_progress(snapshot, width=width, label="generating") == (bar, counts)
    # label, bar, `20/20 (100%)`, counts and `0:00:00`, with a space between each: the width, at most.
    assert len("generating") + bar + len("20/20 (100%)") + len(counts) + 7 + 4 <= width


def test_the_progress_line_says_reconnecting_while_the_connection_is_lost() -> None:
    _, counts = fit_progress(BRIEF | {"totalItems": 20}, width=80, label="watching", reconnecting=True)
    assert counts.startswith("reconnecting… · ")
