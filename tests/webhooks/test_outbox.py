"""The webhook outbox: a delivery row is written in the unit of work of the event it announces, exactly when
that event is; and nothing about it can fail the batch."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from sqlalchemy import text

from livebatch.batches import lifecycle, repository, service
from livebatch.batches.events import BatchPaused
from livebatch.batches.schemas import BudgetSpec
from livebatch.batches.status import BatchStatus
from livebatch.clock import iso
from livebatch.webhooks import service as webhooks
from tests.batches.conftest import PartsFactory, ProbeProvider, control, start_batch
from tests.batches.test_guardrails import PRICES
from tests.checks import event_log, wait_for_status
from tests.conftest import Person
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.webhooks.conftest import FAST, deliveries, set_webhook

QUIET = FAST | {"webhook_poll_s": 3600.0}  # the deliverer makes its first pass at start, then waits: rows stay put


async def test_batch_complete_queues_one_delivery_with_its_event_and_the_course(
    open_parts: PartsFactory, people: dict[str, Person], receiver: WebhookReceiver
) -> None:
    rt = await open_parts(**QUIET)
    owner = people["faculty"]
    await set_webhook(rt.db, owner.user.id, receiver.url)
    batch_id = await start_batch(rt, owner, 3)
    await wait_for_status(rt, batch_id)
    log = await event_log(rt.db, batch_id)
    complete_seq, _, complete = log[-1]
    [delivery] = await deliveries(rt.db)
    assert (delivery.event, delivery.event_seq, delivery.status, delivery.attempts) == (
        "batch.complete",
        complete_seq,
        "pending",
        0,
    )
    assert (delivery.user_id, delivery.batch_id) == (owner.user.id, batch_id)
    data = json.loads(delivery.data)
    assert data == complete | {
        "eventId": complete_seq,
        "course": {"id": "course-uuid-1", "title": "Cardiovascular Pathology"},
        "pagePath": f"/faculty/generate/batch/{batch_id}",
    }
    assert receiver.count() == 0  # written, not sent: the deliverer sends it
    assert rt.deliverer is not None and await rt.deliverer.deliver_due() == 1
    assert receiver.requests()[0].json["data"]["pageUrl"] == f"http://127.0.0.1:8000/faculty/generate/batch/{batch_id}"


async def test_without_a_webhook_nothing_is_queued(open_parts: PartsFactory, people: dict[str, Person]) -> None:
    rt = await open_parts(**QUIET)
    batch_id = await start_batch(rt, people["faculty"], 2)
    await wait_for_status(rt, batch_id)
    assert await deliveries(rt.db) == []


async def test_a_rolled_back_unit_of_work_queues_nothing_and_a_committed_one_does(
    open_parts: PartsFactory, people: dict[str, Person], receiver: WebhookReceiver
) -> None:
    # Nothing finishes by itself: the batch is still running when paused. The attempts stay held at the gate
    # to the end (stopped there, outside any transaction, when the parts close).
    probe = ProbeProvider(held=True)
    rt = await open_parts(probe, **QUIET)
    owner = people["faculty"]
    await set_webhook(rt.db, owner.user.id, receiver.url)
    await control(rt, service.pause_batch, batch_id := await start_batch(rt, owner, 50), owner.user)
    async with rt.transactions.begin() as uow:
        await service.cancel_batch(uow, batch_id, user=owner.user, now=rt.now())
        await uow.rollback()
    assert await deliveries(rt.db, batch_id) == []
    await control(rt, service.cancel_batch, batch_id, owner.user)
    [delivery] = await deliveries(rt.db, batch_id)
    assert json.loads(delivery.data)["status"] == "cancelled"


async def test_an_outbox_that_fails_never_fails_the_batch(
    open_parts: PartsFactory,
    people: dict[str, Person],
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rt = await open_parts(**QUIET)
    owner = people["faculty"]
    await set_webhook(rt.db, owner.user.id, receiver.url)

    async def broken(session: Any, **kwargs: Any) -> None:
        # A statement that fails in the database: on PostgreSQL it would abort the whole transaction, were it
        # not inside its own savepoint.
        await session.execute(text("SELECT * FROM no_such_table"))

    monkeypatch.setattr(webhooks, "enqueue", broken)
    with caplog.at_level(logging.ERROR, logger="livebatch.webhooks"):
        batch_id = await start_batch(rt, owner, 3)
        batch = await wait_for_status(rt, batch_id)
    assert (batch.status, batch.completed_items) == ("completed", 3)
    assert (await event_log(rt.db, batch_id))[-1][1] == "batch.complete"
    assert await deliveries(rt.db) == []
    assert any("the batch goes on without it" in r.getMessage() for r in caplog.records)


async def test_a_guardrail_pause_is_announced_and_a_persons_pause_is_not(
    open_parts: PartsFactory, people: dict[str, Person], receiver: WebhookReceiver
) -> None:
    probe = ProbeProvider(held=True)
    rt = await open_parts(probe, **QUIET)
    owner = people["faculty"]
    await set_webhook(rt.db, owner.user.id, receiver.url)
    batch_id = await start_batch(rt, owner, 40)
    await control(rt, service.pause_batch, batch_id, owner.user)
    assert await deliveries(rt.db, batch_id) == []
    await control(rt, service.resume_batch, batch_id, owner.user)

    # The batch pauses itself, as the guardrails will do it: a `batch.paused` with a reason, through append.
    async with rt.transactions.begin() as uow:
        batch = await repository.lock_batch(uow.session, batch_id)
        assert batch is not None
        lifecycle.stop_clock(batch, rt.now())
        batch.status = BatchStatus.paused
        paused = BatchPaused(batch_id=str(batch_id), paused_at=iso(rt.now()), reason="budget_reached")
        await lifecycle.append(uow, batch, paused, now=rt.now())
        counts = (batch.total_items, batch.completed_items, batch.failed_items)
        await uow.commit()
    [delivery] = await deliveries(rt.db, batch_id)
    data = json.loads(delivery.data)
    assert (delivery.event, data["reason"], data["batchId"]) == ("batch.paused", "budget_reached", str(batch_id))
    assert (data["totalItems"], data["completedItems"], data["failedItems"]) == counts
    assert data["course"]["title"] == "Cardiovascular Pathology"
    await control(rt, service.cancel_batch, batch_id, owner.user)
    assert [d.event for d in await deliveries(rt.db, batch_id)] == ["batch.paused", "batch.complete"]


async def test_a_batch_that_spends_its_budget_pauses_itself_and_its_owner_hears_of_it(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    """The two halves of issue 13 together: a real guardrail pause (not an appended event) queues a delivery
    whose payload says which guard paused the batch."""
    rt = await open_parts(ProbeProvider(), prices=PRICES, batch_concurrency=3, **QUIET)
    owner = people["faculty"]
    await set_webhook(rt.db, owner.user.id, "https://hooks.example.org/livebatch")
    batch_id = await start_batch(rt, owner, 12, budget=BudgetSpec(tokens=1_000))
    paused = await wait_for_status(rt, batch_id, {"paused"})
    assert paused.pause_reason == "budget_reached"
    [delivery] = await deliveries(rt.db, batch_id)
    data = json.loads(delivery.data)
    assert (delivery.event, data["reason"], data["batchId"]) == ("batch.paused", "budget_reached", str(batch_id))
