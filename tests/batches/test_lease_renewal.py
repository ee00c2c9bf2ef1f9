"""A live worker keeps its claims however long a generation takes; a claim outlives a dead one by one lease."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from livebatch.batches import item_repository
from livebatch.batches.models import Item
from livebatch.db import Database
from tests.batches.conftest import PartsFactory, ProbeProvider, start_batch
from tests.checks import assert_consistent, event_log, wait_for_status, wait_until, worker_of
from tests.conftest import Person


async def _item(db: Database, batch_id: object) -> Item:
    async with db.read_session() as session:
        (item,) = (await session.execute(select(Item).where(Item.batch_id == batch_id))).scalars()
    return item


async def test_a_generation_longer_than_its_lease_keeps_its_item(
    open_parts: PartsFactory, db: Database, people: dict[str, Person]
) -> None:
    probe = ProbeProvider(held=True)
    rt = await open_parts(probe, lease_s=1.5, sweep_interval_s=60)  # sweeps only when the test says
    batch_id = await start_batch(rt, people["faculty"], 1)
    await probe.wait_in_flight(1)
    first_lease = (await _item(db, batch_id)).lease_expires_at
    assert first_lease is not None

    async def renewed_past_first_lease() -> bool:
        lease = (await _item(db, batch_id)).lease_expires_at
        return rt.now() > first_lease and lease is not None and lease > rt.now()

    await wait_until(renewed_past_first_lease, timeout=30)
    await worker_of(rt).sweeper.sweep()  # the claim's first lease is over, but its worker is alive: nothing to expire

    item = await _item(db, batch_id)
    assert (item.status, item.attempts) == ("in_progress", 1)
    probe.gate.set()
    batch = await wait_for_status(rt, batch_id, timeout=30)
    assert batch.status == "completed"
    await assert_consistent(db, batch_id)
    assert [name for _, name, _ in await event_log(db, batch_id)] == [
        "item.started",
        "item.completed",
        "batch.complete",
    ]
    assert sum(probe.calls.values()) == 1


async def test_a_renewal_extends_only_the_attempt_that_holds_the_item(
    open_parts: PartsFactory, db: Database, people: dict[str, Person]
) -> None:
    probe = ProbeProvider(held=True)
    rt = await open_parts(probe, lease_s=60, sweep_interval_s=60)
    batch_id = await start_batch(rt, people["faculty"], 1)
    await probe.wait_in_flight(1)
    item = await _item(db, batch_id)
    until = rt.now() + timedelta(hours=1)
    async with db.session() as session:
        stale = await item_repository.renew_leases(session, [(item.id, item.attempts + 1)], until=until)
        current = await item_repository.renew_leases(session, [(item.id, item.attempts)], until=until)
        await session.commit()
    assert (stale, current) == (0, 1)
    assert (await _item(db, batch_id)).lease_expires_at == until
    probe.gate.set()
    assert (await wait_for_status(rt, batch_id, timeout=30)).status == "completed"
