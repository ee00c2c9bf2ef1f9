"""Sweepers never wait on an item row another transaction holds (PostgreSQL): a sweeper re-queueing lost
work, or renewing leases, locks several items in one statement, while a control (cancel, resume, retry)
holds its batch and locks the same items in its own order. Had the sweeper waited, the two could each hold
what the other wants: a deadlock that PostgreSQL breaks after a second by failing one of them, the user's
cancel answered with a 500. A sweeper now skips the rows that are taken; a later pass sees them again."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import UUID

import pytest
from sqlalchemy import select, text, update

from livebatch.batches import item_repository, repository, service
from livebatch.batches.models import Item
from livebatch.clock import utcnow
from livebatch.db import Database
from tests.batches.conftest import spec
from tests.checks import Unqueued
from tests.conftest import Person

pytestmark = pytest.mark.usefixtures("scaled_only")  # SQLite serializes every writer: no row locks


async def _two_dispatched_items(db: Database, owner: Person) -> tuple[UUID, UUID]:
    """Two dispatched items of one new batch, the first before the second in both index and row order,
    so that any plan of a statement over both locks the first first."""
    async with Unqueued(db).begin() as uow:
        limits = service.Limits(concurrency=8)
        batch = await service.create_batch(uow, spec(8), owner=owner.user, limits=limits, now=utcnow())
        await uow.commit()
        ids = list(
            (await uow.session.execute(select(Item.id).where(Item.batch_id == batch.id).order_by(Item.idx))).scalars()
        )
    first = next(i for i, item in enumerate(ids) if any(item < later for later in ids[i + 1 :]))
    second = next(later for later in ids[first + 1 :] if ids[first] < later)
    return ids[first], second


async def _someone_waits_on_a_lock(db: Database) -> bool:
    async with db.read_session() as session:
        waiting = await session.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return bool(waiting.scalar_one())


async def test_a_sweeper_skips_items_a_control_holds_instead_of_deadlocking_with_it(
    db: Database, people: dict[str, Person]
) -> None:
    x, y = await _two_dispatched_items(db, people["faculty"])
    async with db.session() as control:
        batch_id = (await control.execute(select(Item.batch_id).where(Item.id == y))).scalar_one()
        await repository.lock_batch(control, batch_id)  # a control: the batch row, then its items
        await control.execute(update(Item).where(Item.id == y).values(next_attempt_at=utcnow()))

        async def sweep() -> list[UUID]:
            async with db.session() as session:
                later = utcnow() + timedelta(hours=1)
                requeued = await item_repository.redispatch(session, [x, y], now=utcnow(), before=later)
                await session.commit()
                return requeued

        sweeper = asyncio.create_task(sweep())
        async with asyncio.timeout(10):
            while not sweeper.done() and not await _someone_waits_on_a_lock(db):
                await asyncio.sleep(0.02)
        # The control goes on to the sweeper's first item, as a cancel's update of all the batch's items would.
        await control.execute(update(Item).where(Item.id == x).values(next_attempt_at=utcnow()))
        await control.commit()
    requeued = await sweeper
    assert requeued == [x], "the item the control held is left for the next pass"
