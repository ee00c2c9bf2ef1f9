"""Tokens and cost, and the price table they are priced with: pure, so tables suffice."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from livebatch.batches.accounting import Charge, Totals, Usage, charge, price_nanos, to_nanos, to_units
from livebatch.config import ModelPrice, Settings

MINI = ModelPrice(input=0.15, output=0.60)
PRICES = {"gpt-4o-mini": MINI, "free": ModelPrice(input=0, output=0)}


@pytest.mark.parametrize(
    ("usage", "price", "nanos"),
    [
        (Usage(1_000_000, 0, "m"), MINI, 150_000_000),  # a million prompt tokens: 0.15
        (Usage(0, 1_000_000, "m"), MINI, 600_000_000),  # a million completion tokens: 0.60
        (Usage(200, 300, "m"), MINI, 210_000),  # 200 * 150 + 300 * 600 nano-units
        (Usage(1, 0, "m"), ModelPrice(input=0.075, output=0.3), 75),  # one token of a cheap model
        (Usage(1, 1, "m"), ModelPrice(input=0.0001, output=0.0001), 0),  # below a nano-unit rounds to 0
        (Usage(0, 0, "m"), MINI, 0),
    ],
)
def test_price_per_million_tokens_in_nano_units(usage: Usage, price: ModelPrice, nanos: int) -> None:
    assert price_nanos(usage, price) == nanos


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (Usage(200, 300, "gpt-4o-mini"), Charge(200, 300, 210_000)),
        (Usage(200, 300, "free"), Charge(200, 300, 0)),  # priced at 0: a known 0, not an unknown
        (Usage(200, 300, "gpt-4o"), Charge(200, 300, None)),  # no price for this model: unknown, never 0
        (Usage(200, 300, "GPT-4O-MINI"), Charge(200, 300, None)),  # the table's names are exact
        (None, None),  # no usage reported (a 429, a timeout): nothing known to have been used
    ],
)
def test_an_attempt_is_charged_from_the_price_table_or_its_cost_is_unknown(
    usage: Usage | None, expected: Charge | None
) -> None:
    assert charge(usage, PRICES) == expected


def test_a_charge_says_whether_its_cost_is_known() -> None:
    assert (Charge(1, 2, 5).tokens, Charge(1, 2, 5).unpriced) == (3, 0)
    assert Charge(1, 2, None).unpriced == 1


@pytest.mark.parametrize(
    ("totals", "cost"),
    [
        (Totals(), 0.0),
        (Totals(prompt_tokens=10, completion_tokens=5, cost_nanos=123_456_789), 0.123456789),
        (Totals(cost_nanos=5_000_000_000), 5.0),
        (Totals(cost_nanos=100, unpriced_attempts=1), None),  # one attempt of unknown cost: the total is unknown
    ],
)
def test_a_total_cost_is_unknown_while_any_attempt_is(totals: Totals, cost: float | None) -> None:
    assert totals.cost == cost


@pytest.mark.parametrize(("units", "nanos"), [(0.05, 50_000_000), (5.0, 5_000_000_000), (0.000000001, 1)])
def test_units_and_nano_units_convert_both_ways(units: float, nanos: int) -> None:
    assert to_nanos(units) == nanos and to_units(nanos) == units


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"gpt-4o-mini": {"input": 0.15, "output": 0.60}}', {"gpt-4o-mini": MINI}),
        ('{"a": {"input": 1, "output": 2}, "b": {"input": 0, "output": 0}}', None),
        ("", {}),
        ("{}", {}),
    ],
)
def test_the_price_table_is_read_from_json(monkeypatch: pytest.MonkeyPatch, raw: str, expected: object) -> None:
    monkeypatch.setenv("LIVEBATCH_PRICES", raw)
    prices = Settings().prices
    if expected is not None:
        assert prices == expected
    else:
        assert prices == {"a": ModelPrice(input=1, output=2), "b": ModelPrice(input=0, output=0)}


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("{gpt", "not JSON"),
        ('["gpt-4o-mini"]', "must be a JSON object of models"),
        ('{"m": {"input": -1, "output": 1}}', "greater than or equal to 0"),
        ('{"m": {"input": 1}}', "Field required"),
        ('{"m": {"input": 1, "output": 1, "cached": 1}}', "Extra inputs are not permitted"),
        ('{"m": {"input": "cheap", "output": 1}}', "valid number"),
    ],
)
def test_a_bad_price_table_is_refused_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, raw: str, says: str
) -> None:
    monkeypatch.setenv("LIVEBATCH_PRICES", raw)
    with pytest.raises(ValidationError) as refused:
        Settings()
    (error,) = refused.value.errors()
    assert error["loc"][0] == "prices" and says in error["msg"]


@pytest.mark.parametrize("currency", ["usd", "EURO", "€", ""])
def test_the_currency_is_an_iso_code(monkeypatch: pytest.MonkeyPatch, currency: str) -> None:
    monkeypatch.setenv("LIVEBATCH_CURRENCY", currency)
    with pytest.raises(ValidationError, match="currency"):
        Settings()
