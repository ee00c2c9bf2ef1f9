"""When a failed attempt is tried again: exponential backoff with jitter, honouring `Retry-After`."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_ms: int = 1000
    cap_ms: int = 60_000
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def will_retry(self, attempt: int) -> bool:
        return attempt < self.max_attempts

    def delay_ms(self, attempt: int, *, retry_after_ms: int | None = None) -> int:
        """Delay after failed attempt `attempt` (1-based): half of base * 2^(attempt-1) plus up to as much
        again at random (so retries spread out but never shrink), capped; never before `Retry-After`."""
        ceiling = min(self.cap_ms, self.base_ms << max(0, attempt - 1))
        delay = ceiling // 2 + round(self.rng.uniform(0, ceiling / 2))
        return max(delay, retry_after_ms or 0)
