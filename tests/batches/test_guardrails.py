"""Tokens and cost on a running pipeline, and the guards that pause a batch by themselves: its budget and its
error rate. What a user would notice: the counts and the cost, a pause with its reason, nothing lost, and a
batch that runs to its end once resumed."""

from __future__ import annotations

from uuid import UUID

import pytest
from sqlalchemy import func, select

from livebatch.batches import service
from livebatch.batches.accounting import Usage
from livebatch.batches.lifecycle import snapshot_of
from livebatch.batches.models import Item
from livebatch.batches.schemas import BudgetSpec
from livebatch.config import ModelPrice
from livebatch.errors import BadRequest
from livebatch.generation.offline import compose, usage_of
from livebatch.generation.providers import GenerationError, ItemRequest
from livebatch.parts import Parts
from tests.batches.conftest import PartsFactory, ProbeProvider, control, start_batch
from tests.batches.ledger import assert_attempts_accounted
from tests.checks import assert_consistent, event_log, load_batch, wait_for_status, wait_until
from tests.conftest import Person

PRICES = {"offline": ModelPrice(input=0.15, output=0.60)}


def nanos(usage: Usage) -> int:
    return usage.prompt_tokens * 150 + usage.completion_tokens * 600


async def item_usage(rt: Parts, batch_id: UUID) -> dict[int, tuple[int, int, int, int]]:
    async with rt.db.read_session() as session:
        rows = await session.execute(
            select(Item.idx, Item.prompt_tokens, Item.completion_tokens, Item.cost_nanos, Item.unpriced_attempts)
            .where(Item.batch_id == batch_id)
            .order_by(Item.idx)
        )
        return {idx: (p, c, n, u) for idx, p, c, n, u in rows.all()}


async def test_every_attempt_failed_ones_included_is_counted_on_its_item_and_its_batch(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    probe = ProbeProvider()
    broken = Usage(prompt_tokens=200, completion_tokens=900, model="offline")  # an answer that broke the schema
    probe.fail(1, GenerationError("validation", "Validation failed: not the schema", usage=broken))
    probe.fail(2, GenerationError("rate_limited", "Rate limited by the provider (HTTP 429)"))  # no answer
    rt = await open_parts(probe, prices=PRICES, batch_concurrency=2)
    batch_id = await start_batch(rt, people["faculty"], 4)
    batch = await wait_for_status(rt, batch_id)
    assert batch.status == "completed"
    await assert_consistent(rt.db, batch_id)

    async with rt.db.read_session() as session:
        difficulties = dict(
            (await session.execute(select(Item.idx, Item.difficulty).where(Item.batch_id == batch_id))).all()
        )

    def succeeded(index: int, attempt: int) -> Usage:
        """What the offline provider reports for this attempt (its figures follow the question it wrote)."""
        request = ItemRequest(batch_id, index, attempt, "", "single-best-answer", difficulties[index])
        return usage_of(request, compose(request))

    expected = {
        0: [succeeded(0, 1)],
        1: [broken, succeeded(1, 2)],  # the failed attempt's tokens count too
        2: [succeeded(2, 2)],  # the 429 used nothing that we know of
        3: [succeeded(3, 1)],
    }
    rows = await item_usage(rt, batch_id)
    for index, usages in expected.items():
        prompt = sum(u.prompt_tokens for u in usages)
        completion = sum(u.completion_tokens for u in usages)
        assert rows[index] == (prompt, completion, sum(nanos(u) for u in usages), 0), index
    assert (batch.prompt_tokens, batch.completion_tokens, batch.cost_nanos, batch.unpriced_attempts) == (
        sum(r[0] for r in rows.values()),
        sum(r[1] for r in rows.values()),
        sum(r[2] for r in rows.values()),
        0,
    )
    snapshot = snapshot_of(batch)
    assert (snapshot.prompt_tokens, snapshot.completion_tokens) == (batch.prompt_tokens, batch.completion_tokens)
    assert snapshot.cost == pytest.approx(batch.cost_nanos / 1e9) and snapshot.currency == "USD"


async def test_a_model_without_a_price_has_an_unknown_cost_never_0(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    rt = await open_parts(prices={"gpt-4o-mini": ModelPrice(input=0.15, output=0.6)})  # nothing for `offline`
    batch_id = await start_batch(rt, people["faculty"], 3)
    batch = await wait_for_status(rt, batch_id)
    snapshot = snapshot_of(batch)
    assert snapshot.prompt_tokens > 0 and snapshot.completion_tokens > 0, "the tokens are known all the same"
    assert snapshot.cost is None and batch.unpriced_attempts == 3 and batch.cost_nanos == 0
    assert all(row[3] == 1 for row in (await item_usage(rt, batch_id)).values())


async def test_a_spent_budget_pauses_the_batch_in_flight_work_finishes_and_a_raised_one_lets_it_run_to_the_end(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    probe = ProbeProvider()
    rt = await open_parts(probe, prices=PRICES, batch_concurrency=3)
    owner = people["faculty"]
    # About three items' worth of tokens (an offline item uses 300-450).
    batch_id = await start_batch(rt, owner, 12, budget=BudgetSpec(tokens=1_000))
    paused = await wait_for_status(rt, batch_id, {"paused"})
    assert paused.pause_reason == "budget_reached"

    async def settled() -> bool:
        return (await load_batch(rt.db, batch_id)).in_progress_items == 0

    await wait_until(settled)
    batch = await assert_consistent(rt.db, batch_id)
    assert batch.status == "paused" and batch.prompt_tokens + batch.completion_tokens >= 1_000
    assert 3 <= batch.completed_items <= 5 and batch.completed_items + batch.pending_items == 12
    events = await event_log(rt.db, batch_id)
    (pause,) = [(seq, p) for seq, name, p in events if name == "batch.paused"]
    assert pause[1]["reason"] == "budget_reached"
    after = [name for seq, name, _ in events if seq > pause[0]]
    assert set(after) <= {"item.completed"}, "work in flight finishes; nothing new starts"

    # Resuming with the budget still spent is refused, and says what to do.
    with pytest.raises(service.BudgetReached, match=r"budget \(1000 tokens\) is spent; raise it before resuming"):
        await control(rt, service.resume_batch, batch_id, owner.user)
    async with rt.transactions.begin() as uow:
        await service.set_budget(
            uow, batch_id, BudgetSpec(tokens=100_000), user=owner.user, limits=rt.limits, now=rt.now()
        )
        await uow.commit()
    assert (await load_batch(rt.db, batch_id)).status == "paused", "a raised budget does not resume by itself"
    await control(rt, service.resume_batch, batch_id, owner.user)
    done = await wait_for_status(rt, batch_id)
    assert (done.status, done.completed_items) == ("completed", 12)
    await assert_consistent(rt.db, batch_id)
    await assert_attempts_accounted(rt.db, batch_id, max_attempts=3)
    assert sum(probe.calls.values()) == 12, "no item was generated twice"


async def test_a_cost_budget_pauses_the_batch_at_the_item_that_reaches_it(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    rt = await open_parts(prices=PRICES, batch_concurrency=1)  # one item at a time: nothing in flight at the pause
    # An offline item costs about 0.00014 USD at these prices: three items' worth, give or take.
    batch_id = await start_batch(rt, people["faculty"], 10, budget=BudgetSpec(cost=0.0004))
    paused = await wait_for_status(rt, batch_id, {"paused"})
    assert paused.pause_reason == "budget_reached"
    costs = [row[2] for index, row in sorted((await item_usage(rt, batch_id)).items()) if row[2] > 0]
    assert len(costs) == paused.completed_items and paused.cost_nanos == sum(costs)
    assert sum(costs[:-1]) < 400_000 <= sum(costs), "it paused at the first item that reached the budget"


async def test_a_cost_budget_needs_a_price_for_the_providers_model(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    rt = await open_parts()  # no price table
    with pytest.raises(BadRequest, match=r"budget\.cost needs a price for model 'offline' in LIVEBATCH_PRICES"):
        await start_batch(rt, people["faculty"], 3, budget=BudgetSpec(cost=1.0))
    batch_id = await start_batch(rt, people["faculty"], 3, budget=BudgetSpec(tokens=10**6))  # tokens are counted
    assert (await wait_for_status(rt, batch_id)).status == "completed"


async def test_the_error_rate_guard_pauses_at_more_than_half_of_20_failures_and_resume_rearms_it(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    probe = ProbeProvider()
    rt = await open_parts(probe, batch_concurrency=2, max_attempts=10, retry_base_ms=1, retry_max_ms=2)
    owner = people["faculty"]
    for index in range(6):  # the provider is down for the first attempts at the first six items
        probe.fail(index, *[GenerationError("rate_limited", "Rate limited by the provider (HTTP 429)")] * 3)
    batch_id = await start_batch(rt, owner, 6)
    paused = await wait_for_status(rt, batch_id, {"paused"})
    assert paused.pause_reason == "error_rate"

    async def settled() -> bool:
        return (await load_batch(rt.db, batch_id)).in_progress_items == 0

    await wait_until(settled)
    events = await event_log(rt.db, batch_id)
    seq_of_pause = next(seq for seq, name, p in events if name == "batch.paused" and p["reason"] == "error_rate")
    failed_before = sum(1 for seq, name, _ in events if name == "item.failed" and seq < seq_of_pause)
    assert failed_before == 11, "the 11th failure of the last 20 attempts trips it"
    attempts = sum(1 for _, name, _ in events if name == "item.started")
    assert attempts <= 11 + 1, "only the attempt in flight at the pause came after"
    batch = await assert_consistent(rt.db, batch_id)
    assert batch.recent_outcomes.count("x") >= 11

    # Resumed, the guard starts from an empty window: the 7 failures still scripted do not trip it again.
    await control(rt, service.resume_batch, batch_id, owner.user)
    assert (await load_batch(rt.db, batch_id)).recent_outcomes == ""
    done = await wait_for_status(rt, batch_id)
    assert (done.status, done.completed_items) == ("completed", 6)
    await assert_consistent(rt.db, batch_id)
    names = [name for _, name, _ in await event_log(rt.db, batch_id)]
    assert names.count("batch.paused") == 1


async def test_a_batch_with_the_guard_off_fails_its_items_and_never_pauses_itself(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    probe = ProbeProvider()
    for index in range(5):
        probe.fail(index, *[GenerationError("rate_limited", "Rate limited by the provider (HTTP 429)")] * 3)
    rt = await open_parts(probe, batch_concurrency=2, retry_base_ms=1, retry_max_ms=2)
    batch_id = await start_batch(rt, people["faculty"], 5, error_rate_guard=False)
    batch = await wait_for_status(rt, batch_id)
    assert (batch.status, batch.failed_items) == ("failed", 5)
    assert batch.recent_outcomes == "", "no window is kept for a guard that is off"
    assert "batch.paused" not in [name for _, name, _ in await event_log(rt.db, batch_id)]


async def test_a_pause_by_hand_says_so(open_parts: PartsFactory, people: dict[str, Person]) -> None:
    probe = ProbeProvider(held=True)
    rt = await open_parts(probe)
    owner = people["faculty"]
    batch_id = await start_batch(rt, owner, 4)
    paused = await control(rt, service.pause_batch, batch_id, owner.user)
    assert paused.pause_reason == "user"
    (payload,) = [p for _, name, p in await event_log(rt.db, batch_id) if name == "batch.paused"]
    assert payload["reason"] == "user"
    probe.gate.set()
    await control(rt, service.resume_batch, batch_id, owner.user)
    assert (await load_batch(rt.db, batch_id)).pause_reason is None
    assert (await wait_for_status(rt, batch_id)).status == "completed"


async def test_the_tokens_of_an_attempt_whose_batch_was_cancelled_meanwhile_are_counted_once(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    probe = ProbeProvider(held=True)
    rt = await open_parts(probe, prices=PRICES, batch_concurrency=2)
    owner = people["faculty"]
    batch_id = await start_batch(rt, owner, 4)
    await probe.wait_in_flight(2)
    await control(rt, service.cancel_batch, batch_id, owner.user)
    probe.gate.set()  # the two attempts answer after the cancel: their results are discarded

    async def counted() -> bool:
        async with rt.db.read_session() as session:
            used = await session.scalar(
                select(func.count()).where(Item.batch_id == batch_id, Item.usage_attempt > 0).select_from(Item)
            )
        return used == 2

    await wait_until(counted)
    batch = await assert_consistent(rt.db, batch_id)
    rows = await item_usage(rt, batch_id)
    assert batch.status == "cancelled" and batch.completed_items == 0
    assert batch.prompt_tokens == sum(r[0] for r in rows.values()) > 0
    assert batch.cost_nanos == sum(r[2] for r in rows.values()) > 0
