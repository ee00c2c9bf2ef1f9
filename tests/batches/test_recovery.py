"""A process that starts picks up what a dead one left: expired leases and queued work that vanished."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from sqlalchemy import select

from livebatch.batches import service, work
from livebatch.batches.models import Item
from livebatch.batches.service import Limits
from livebatch.batches.work import Claim
from livebatch.clock import utcnow
from livebatch.db import Database
from livebatch.users.models import User
from tests.batches.conftest import PartsFactory, ProbeProvider, control, spec
from tests.batches.ledger import assert_attempts_accounted
from tests.checks import Unqueued, assert_consistent, event_log, load_batch, wait_for_status, worker_of
from tests.conftest import Person


async def _leave_behind(db: Database, owner: User, count: int, *, claimed: int, lease: timedelta) -> UUID:
    """What a process killed mid-batch leaves: `claimed` items in progress on a lease of `lease` from now,
    the rest of the window dispatched but never queued anywhere, the others pending."""
    now = utcnow()
    unqueued = Unqueued(db)  # the dispatched work is never queued
    async with unqueued.begin() as uow:
        batch = await service.create_batch(uow, spec(count), owner=owner, limits=Limits(concurrency=4), now=now)
        await uow.commit()
    dispatched = unqueued.dispatched
    assert len(dispatched) == min(count, 4)  # Limits(concurrency=4)
    for item_id in dispatched[:claimed]:
        async with unqueued.begin() as uow:
            claim = await work.claim_item(uow, item_id, now=now, lease=lease)
            assert isinstance(claim, Claim)
            await uow.commit()
    return batch.id


async def test_a_new_process_requeues_expired_leases_and_lost_dispatches(
    open_parts: PartsFactory, db: Database, people: dict[str, Person]
) -> None:
    owner = people["faculty"]
    batch_id = await _leave_behind(db, owner.user, 10, claimed=2, lease=timedelta(seconds=-1))
    probe = ProbeProvider()
    rt = await open_parts(probe, batch_concurrency=4, dispatch_timeout_s=0.3, sweep_interval_s=0.1)

    batch = await wait_for_status(rt, batch_id, timeout=30)
    assert batch.status == "completed"
    await assert_consistent(db, batch_id)
    await assert_attempts_accounted(db, batch_id, max_attempts=3)
    assert set(probe.calls.values()) == {1} and len(probe.calls) == 10
    failures = [p for _, name, p in await event_log(db, batch_id) if name == "item.failed"]
    assert [(p["itemIndex"], p["retryCount"], p["willRetry"], p["errorKind"]) for p in failures] == [
        (0, 1, True, "internal"),
        (1, 1, True, "internal"),
    ]
    assert all("lease expired" in p["errorMessage"] for p in failures)


async def test_a_live_lease_is_left_alone(open_parts: PartsFactory, db: Database, people: dict[str, Person]) -> None:
    """An item another worker holds on a lease that has not expired is not taken from it."""
    owner = people["faculty"]
    batch_id = await _leave_behind(db, owner.user, 1, claimed=1, lease=timedelta(minutes=5))
    probe = ProbeProvider()
    rt = await open_parts(probe, dispatch_timeout_s=0.3)
    await worker_of(rt).sweeper.sweep()
    await worker_of(rt).sweeper.sweep()
    batch = await load_batch(db, batch_id)
    assert (batch.status, batch.in_progress_items) == ("running", 1)
    assert not probe.calls
    async with db.read_session() as session:
        (item,) = (await session.execute(select(Item).where(Item.batch_id == batch_id))).scalars()
    assert (item.status, item.attempts) == ("in_progress", 1)
    await control(rt, service.cancel_batch, batch_id, owner.user)


async def test_work_lost_while_the_process_runs_is_queued_again(
    open_parts: PartsFactory, db: Database, people: dict[str, Person]
) -> None:
    """Dispatched work that never reaches a worker (a task that died before its claim, a queue message
    lost) is queued again once it is `dispatch_timeout_s` old, also on the embedded in-memory queue."""
    probe = ProbeProvider()
    rt = await open_parts(probe, batch_concurrency=2, dispatch_timeout_s=0.5, sweep_interval_s=0.1)
    batch_id = await _leave_behind(db, people["faculty"].user, 4, claimed=0, lease=timedelta(minutes=1))
    batch = await wait_for_status(rt, batch_id, timeout=20)
    assert batch.status == "completed"
    await assert_consistent(db, batch_id)
    assert set(probe.calls.values()) == {1} and len(probe.calls) == 4
