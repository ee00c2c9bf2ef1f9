"""The guards that pause a batch by themselves: its budget, and its error rate. Values in, values out.

A batch's config may carry a `budget`: a cost cap in the configured currency, a token cap, or both. Once
the recorded usage reaches either, the batch pauses with the reason `budget_reached`. The error-rate
guard (on unless the config says `errorRateGuard: false`) watches the outcomes of the batch's last
`ERROR_WINDOW` attempts since it was armed and pauses the batch with the reason `error_rate` when more
than half of that window failed: at least 11 failures among the last 20 attempts, so fewer than 11
attempts can never trip it. The outcomes are kept on the batch row as text, oldest first, one character
an attempt (`.` succeeded, `x` failed). Resuming (or retrying the failed items) re-arms the guard: its
window starts empty.

Either check runs in the transaction that records an attempt's outcome, after that outcome: in-flight
attempts still finish and are recorded, as with a pause by hand; none is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from livebatch.batches.accounting import to_nanos, to_units

ERROR_WINDOW = 20
SUCCEEDED, FAILED = ".", "x"

PauseReason = Literal["user", "budget_reached", "error_rate"]


@dataclass(frozen=True, slots=True)
class Budget:
    """Caps on what a batch may spend: nano-units of the currency and tokens (None: no cap)."""

    cost_nanos: int | None = None
    tokens: int | None = None

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Budget:
        """The budget of a batch's config (`{"budget": {"cost": 5.0, "tokens": null}}`); none when absent."""
        budget = config.get("budget") or {}
        cost, tokens = budget.get("cost"), budget.get("tokens")
        return cls(None if cost is None else to_nanos(float(cost)), None if tokens is None else int(tokens))

    @property
    def capped(self) -> bool:
        return self.cost_nanos is not None or self.tokens is not None

    def reached(self, *, tokens: int, cost_nanos: int) -> bool:
        """Whether what was spent (the known part of the cost) has reached a cap."""
        if self.tokens is not None and tokens >= self.tokens:
            return True
        return self.cost_nanos is not None and cost_nanos >= self.cost_nanos

    def describe(self, currency: str) -> str:
        """`0.05 USD`, `20000 tokens`, or both."""
        caps = []
        if self.cost_nanos is not None:
            caps.append(f"{to_units(self.cost_nanos):g} {currency}")
        if self.tokens is not None:
            caps.append(f"{self.tokens} tokens")
        return " or ".join(caps) or "none"


def error_rate_guard_on(config: Mapping[str, Any]) -> bool:
    """On unless the batch's config turns it off (batches made before the guard existed have it on)."""
    return bool(config.get("errorRateGuard", True))


def record_outcome(window: str, *, failed: bool) -> str:
    """The window after one more attempt."""
    return (window + (FAILED if failed else SUCCEEDED))[-ERROR_WINDOW:]


def recent_failures(window: str) -> int:
    return window.count(FAILED)


def error_rate_tripped(window: str) -> bool:
    """More than half of the last ERROR_WINDOW attempts failed (attempts not yet made count as not failed)."""
    return recent_failures(window) * 2 > ERROR_WINDOW


def trip(budget: Budget, *, tokens: int, cost_nanos: int, window: str, error_rate_guard: bool) -> PauseReason | None:
    """Why a running batch must pause now, or None. The budget comes first: what was spent stays spent,
    while errors may pass by themselves."""
    if budget.reached(tokens=tokens, cost_nanos=cost_nanos):
        return "budget_reached"
    if error_rate_guard and error_rate_tripped(window):
        return "error_rate"
    return None
