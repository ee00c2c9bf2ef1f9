"""When a failed webhook delivery is tried again: exponential backoff with jitter, up to a limit. Pure."""

from __future__ import annotations

import random


def ceiling_s(attempt: int, *, base_s: float, cap_s: float) -> float:
    """The longest wait after failed attempt `attempt` (1-based): base · 2^(attempt-1), capped."""
    return min(cap_s, base_s * float(2 ** max(0, attempt - 1)))


def delay_s(attempt: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Between half and all of the ceiling, at random: retries of many deliveries spread out (no thundering
    herd when a receiver comes back), and a delay never shrinks below half of its step."""
    ceiling = ceiling_s(attempt, base_s=base_s, cap_s=cap_s)
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def retry_after_s(attempt: int, *, max_attempts: int, base_s: float, cap_s: float, rng: random.Random) -> float | None:
    """The wait before the next attempt after failed attempt `attempt`; None when it was the last one."""
    if attempt >= max_attempts:
        return None
    return delay_s(attempt, base_s=base_s, cap_s=cap_s, rng=rng)


def schedule(max_attempts: int, *, base_s: float, cap_s: float) -> list[tuple[float, float]]:
    """(shortest, longest) wait before each retry: what the README's table shows."""
    return [
        (ceiling_s(a, base_s=base_s, cap_s=cap_s) / 2, ceiling_s(a, base_s=base_s, cap_s=cap_s))
        for a in range(1, max_attempts)
    ]
