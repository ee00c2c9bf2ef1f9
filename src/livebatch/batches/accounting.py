"""Tokens and cost: what one attempt used and what it cost. Values in, values out; no session, no clock.

A provider reports the tokens of an attempt (`Usage`); the process that records the attempt prices it with
its price table (`LIVEBATCH_PRICES`, per million tokens) into a `Charge`. Costs are kept as whole
nano-units of the currency (10^-9), so that sums over thousands of attempts are exact: one token of a model
at 0.15 per million is 150 nano-units. A model missing from the table has an unknown cost, which is never
counted as 0: the charge says `cost_nanos=None`, and a batch or item with any such attempt has an unknown
total (`cost: null` on the wire) while its tokens still add up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from livebatch.config import ModelPrice

NANOS_PER_UNIT = 10**9
# One token at a price "per million tokens" costs price / 10^6 units, which is price * 1000 nano-units.
_NANOS_PER_TOKEN_PER_PRICE = NANOS_PER_UNIT // 10**6


@dataclass(frozen=True, slots=True)
class Usage:
    """The tokens one request used, as the provider reported them, and the model they are priced as."""

    prompt_tokens: int
    completion_tokens: int
    model: str


@dataclass(frozen=True, slots=True)
class Charge:
    """What one attempt cost: its tokens, and its cost in nano-units; None when its model has no price."""

    prompt_tokens: int
    completion_tokens: int
    cost_nanos: int | None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def unpriced(self) -> int:
        """1 when this attempt's cost is unknown: counted, so that a total with it is known to be unknown."""
        return 1 if self.cost_nanos is None else 0


@dataclass(frozen=True, slots=True)
class Totals:
    """A batch's (or an item's) usage so far: every recorded attempt's, failed ones included."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_nanos: int = 0  # the cost of the attempts whose model had a price
    unpriced_attempts: int = 0  # attempts whose model had none: while any, the total cost is unknown
    currency: str = "USD"

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost(self) -> float | None:
        """The total cost in currency units, or None when some attempt's cost is unknown."""
        return None if self.unpriced_attempts else to_units(self.cost_nanos)


def price_nanos(usage: Usage, price: ModelPrice) -> int:
    """The cost of `usage` at `price`, in nano-units, rounded to the nearest."""
    per_token = _NANOS_PER_TOKEN_PER_PRICE
    return round(usage.prompt_tokens * price.input * per_token + usage.completion_tokens * price.output * per_token)


def charge(usage: Usage | None, prices: Mapping[str, ModelPrice]) -> Charge | None:
    """What an attempt that used `usage` cost; None when the provider reported no usage (a request that got no
    answer, a 429: nothing that we know of was used)."""
    if usage is None:
        return None
    price = prices.get(usage.model)
    cost = None if price is None else price_nanos(usage, price)
    return Charge(max(0, usage.prompt_tokens), max(0, usage.completion_tokens), cost)


def to_units(nanos: int) -> float:
    """Nano-units as currency units (0.000150 for 150 000 nano-units), to the nano-unit."""
    return round(nanos / NANOS_PER_UNIT, 9)


def to_nanos(units: float) -> int:
    return round(units * NANOS_PER_UNIT)
