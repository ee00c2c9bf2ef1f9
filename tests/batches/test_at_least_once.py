"""Delivery is at least once; generation is once: duplicate deliveries and late workers change nothing."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from uuid import UUID

from sqlalchemy import select

from livebatch.batches import service, work
from livebatch.batches.lifecycle import Failure
from livebatch.batches.models import GeneratedItem, Item
from livebatch.batches.retry import RetryPolicy
from livebatch.batches.service import Limits
from livebatch.batches.work import Claim
from livebatch.clock import utcnow
from livebatch.db import Database
from livebatch.generation.offline import compose
from livebatch.generation.providers import ItemRequest
from tests.batches.conftest import PartsFactory, ProbeProvider, spec, start_batch
from tests.batches.ledger import assert_attempts_accounted, max_in_flight
from tests.checks import Unqueued, assert_consistent, event_log, wait_for_status
from tests.conftest import Person


async def _item_ids(db: Database, batch_id: UUID) -> list[UUID]:
    async with db.read_session() as session:
        return list(
            (await session.execute(select(Item.id).where(Item.batch_id == batch_id).order_by(Item.idx))).scalars()
        )


async def test_duplicate_deliveries_generate_each_item_once_and_keep_the_window(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    probe = ProbeProvider()
    rt = await open_parts(probe, batch_concurrency=2)
    batch_id = await start_batch(rt, people["faculty"], 6)
    ids = await _item_ids(rt.db, batch_id)
    # Every item delivered twice more, dispatched or not (a redelivered message, a sweeper's re-queue).
    await rt.queue.enqueue(ids + ids)

    batch = await wait_for_status(rt, batch_id)
    assert batch.status == "completed"
    await assert_consistent(rt.db, batch_id)
    await assert_attempts_accounted(rt.db, batch_id, max_attempts=3)
    assert set(probe.calls.values()) == {1} and len(probe.calls) == 6
    events = await event_log(rt.db, batch_id)
    assert Counter(p["itemIndex"] for _, name, p in events if name == "item.started") == dict.fromkeys(range(6), 1)
    assert max_in_flight(events) <= 2


async def test_a_late_result_from_a_worker_whose_lease_expired_is_discarded(
    db: Database, people: dict[str, Person]
) -> None:
    """Worker A claims, stalls past its lease; the sweeper hands the item on; worker B generates it.
    A's result then arrives: it must not be recorded a second time."""
    owner = people["faculty"].user
    policy = RetryPolicy(max_attempts=3, base_ms=100, cap_ms=100)
    t0 = utcnow()
    lease = timedelta(seconds=1)
    async with Unqueued(db).begin() as uow:
        batch = await service.create_batch(uow, spec(1), owner=owner, limits=Limits(), now=t0)
        await uow.commit()
    (item_id,) = await _item_ids(db, batch.id)

    async with Unqueued(db).begin() as uow:
        a = await work.claim_item(uow, item_id, now=t0, lease=lease)
        await uow.commit()
    assert isinstance(a, Claim) and a.attempt == 1
    async with Unqueued(db).begin() as uow:  # the sweeper, after the lease
        assert await work.expire_lease(uow, item_id, 1, policy=policy, now=t0 + 2 * lease)
        await uow.commit()
    async with Unqueued(db).begin() as uow:
        b = await work.claim_item(uow, item_id, now=t0 + 3 * lease, lease=lease)
        await uow.commit()
    assert isinstance(b, Claim) and b.attempt == 2
    question = compose(
        ItemRequest(batch.id, 0, 1, course_title="x", question_type="single-best-answer", difficulty=a.difficulty)
    )
    async with Unqueued(db).begin() as uow:
        assert await work.complete_item(uow, b, question, now=t0 + 4 * lease)
        await uow.commit()
    async with Unqueued(db).begin() as uow:
        assert not await work.complete_item(uow, a, question, now=t0 + 5 * lease)
        assert not await work.fail_item(uow, a, Failure("timeout", "late"), policy=policy, now=t0 + 5 * lease)
        await uow.commit()

    final = await assert_consistent(db, batch.id)
    assert (final.status, final.completed_items) == ("completed", 1)
    async with db.read_session() as session:
        assert len((await session.execute(select(GeneratedItem))).all()) == 1
    names = [(name, p.get("retryCount")) for _, name, p in await event_log(db, batch.id)]
    assert names == [
        ("item.started", None),
        ("item.failed", 1),
        ("item.started", None),
        ("item.completed", None),
        ("batch.complete", None),
    ]
