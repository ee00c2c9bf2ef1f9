"""Progress math: values in, values out; no session, no clock, no logging.

Throughput is measured on the batch's *active clock*, which stops while the batch is paused. The batch
keeps `window` = [c0, c1, ..., ck]: the active-clock times (ms) of its last k <= 10 completions, c1..ck,
preceded by c0, the completion just before them (or 0, the moment the batch started, while it has had
at most 10). With `left` = pending + in progress, `n` the batch's concurrency and `p` its prior (the
expected time of one item, fixed when the batch was created):

    throughput (items/min) = k / (ck - c0) * 60 000                 0 when k = 0
    ETA (ms)               = left / throughput * 60 000             once k >= 1
                           = ceil(left / n) * p                     before the first completion
                           = 0                                      when left = 0, or the batch is over

and never 0 while items are left in a batch that is not over. Using stored values only (not "now")
keeps a snapshot a pure function of the batch row: every stream and a page refresh show the same
figures, and the page counts the ETA down between snapshots. With the brief's numbers, 10 completions
16.67 s apart give 3.6 items/min, and 7 items left take 116 667 ms; before any completion, 20 items at
a concurrency of 4 and 30 s an item take 150 000 ms.

Beside the point ETA the snapshot carries its range, [low, high] (eta_range.py), and the batch's usage:
tokens and cost of every recorded attempt (accounting.py), read from counters on the row like the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from livebatch.batches.accounting import Totals
from livebatch.batches.eta_range import eta_range_ms
from livebatch.batches.events import BatchProgressSnapshot

WINDOW = 10


def percentage(completed: int, total: int) -> int:
    """Whole percent completed, rounded down so that 100 means every item completed."""
    return 0 if total <= 0 else completed * 100 // total


def throughput_per_minute(window: Sequence[int]) -> float:
    completions = len(window) - 1
    if completions < 1:
        return 0.0
    span_ms = max(window[-1] - window[0], 1)
    return completions * 60_000 / span_ms


def eta_ms(remaining: int, per_minute: float) -> int:
    """Milliseconds left at the current rate, at least 1 while anything is left; 0 until there is a rate."""
    if remaining <= 0 or per_minute <= 0:
        return 0
    return max(1, round(remaining / per_minute * 60_000))


def prior_eta_ms(remaining: int, concurrency: int, item_ms: int) -> int:
    """Milliseconds left before any completion: rounds of `concurrency` items, each taking the prior."""
    if remaining <= 0:
        return 0
    rounds = -(-remaining // max(1, concurrency))
    return rounds * max(1, item_ms)


def estimate_ms(remaining: int, window: Sequence[int], *, concurrency: int, item_prior_ms: int) -> int:
    """The ETA: from the throughput once there is one, from the prior until then."""
    rate = throughput_per_minute(window)
    if rate > 0:
        return eta_ms(remaining, rate)
    return prior_eta_ms(remaining, concurrency, item_prior_ms)


def push_completion(window: Sequence[int], at_ms: int) -> list[int]:
    """The window after one more completion at active-clock time `at_ms`.

    Completions are timed before their transaction waits for the batch's lock, so they can be recorded
    a few ms out of order; one recorded later never counts as earlier, or the span could go negative."""
    if window:
        at_ms = max(at_ms, window[-1])
    return [*window, at_ms][-(WINDOW + 1) :]


def run_rate_per_minute(completed: int, active_ms: int) -> float:
    """Items per minute over a whole run: every completion over the active time (0 without either)."""
    return 0.0 if completed <= 0 or active_ms <= 0 else completed * 60_000 / active_ms


def active_clock_ms(active_ms: int, running_since: datetime | None, now: datetime) -> int:
    """Active time so far: what was accumulated, plus the current running period."""
    if running_since is None:
        return active_ms
    return active_ms + max(0, round((now - running_since).total_seconds() * 1000))


def snapshot(
    batch_id: str,
    *,
    total: int,
    completed: int,
    failed: int,
    in_progress: int,
    pending: int,
    cancelled: int,
    window: Sequence[int],
    concurrency: int,
    item_prior_ms: int,
    finished: bool,
    usage: Totals = Totals(),  # noqa: B008 (frozen: one shared instance is fine)
    retrying: int = 0,
) -> BatchProgressSnapshot:
    """The batch's figures; `finished`: it is over, so nothing left will run (until a retry). `retrying`:
    the pending items that failed an attempt and wait to be tried again (none once the batch is over)."""
    left = 0 if finished else pending + in_progress
    eta = estimate_ms(left, window, concurrency=concurrency, item_prior_ms=item_prior_ms)
    eta_range = eta_range_ms(left, window, point_ms=eta)
    return BatchProgressSnapshot(
        batch_id=batch_id,
        total_items=total,
        completed_items=completed,
        failed_items=failed,
        in_progress_items=in_progress,
        pending_items=pending,
        cancelled_items=cancelled,
        retrying_items=0 if finished else retrying,
        percentage=percentage(completed, total),
        estimated_time_remaining_ms=eta,
        throughput_rate=round(throughput_per_minute(window), 2),
        estimated_time_remaining_range_ms=None if eta_range is None else list(eta_range),
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cost=usage.cost,
        currency=usage.currency,
    )
