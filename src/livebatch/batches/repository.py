"""Every query of the batch domain, session first, named for the question it answers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import and_, func, insert, or_, select, tuple_, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.batches.models import ACTIVE_STATUSES, Batch, GeneratedItem, Item, ItemStatus
from livebatch.courses.models import Course
from livebatch.db import Base

PENDING, IN_PROGRESS = ItemStatus.pending.value, ItemStatus.in_progress.value
# The item table in plain Core, for the statements every item runs (claim, finish, dispatch): an ORM-enabled
# UPDATE costs several times the Python work of the same Core one, and nothing here needs the ORM's part.
ITEMS = Base.metadata.tables["batch_items"]
GENERATED = Base.metadata.tables["generated_items"]


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount


async def get_batch(session: AsyncSession, batch_id: UUID) -> Batch | None:
    return await session.get(Batch, batch_id)


async def lock_batch(session: AsyncSession, batch_id: UUID) -> Batch | None:
    """The batch row, locked for this transaction (SQLite's BEGIN IMMEDIATE already holds the lock).

    Every writing transaction locks its batch first and its items after, so writers never deadlock."""
    stmt = select(Batch).where(Batch.id == batch_id).with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_item(session: AsyncSession, item_id: UUID) -> Item | None:
    return await session.get(Item, item_id)


async def get_item_and_course_title(session: AsyncSession, item_id: UUID) -> tuple[Item, str] | None:
    """The item and the title of its batch's course, in one statement (a claim needs both)."""
    stmt = (
        select(Item, Course.title)
        .join(Batch, Batch.id == Item.batch_id)
        .join(Course, Course.id == Batch.course_id)
        .where(Item.id == item_id)
    )
    row = (await session.execute(stmt)).one_or_none()
    return None if row is None else (row[0], row[1])


async def insert_items(session: AsyncSession, batch_id: UUID, difficulties: Sequence[str], *, now: datetime) -> None:
    rows = [
        {
            "id": uuid4(),
            "batch_id": batch_id,
            "idx": i,
            "difficulty": d,
            "status": PENDING,
            "next_attempt_at": now,
        }
        for i, d in enumerate(difficulties)
    ]
    for start in range(0, len(rows), 5000):
        await session.execute(insert(Item), rows[start : start + 5000])


async def count_active_batches(session: AsyncSession, owner_id: UUID) -> int:
    stmt = select(func.count()).where(Batch.owner_id == owner_id, Batch.status.in_(ACTIVE_STATUSES))
    return int((await session.execute(stmt)).scalar_one())


async def mark_dispatched(session: AsyncSession, batch_id: UUID, count: int, *, now: datetime) -> list[UUID]:
    """Picks up to `count` pending, undispatched items, soonest due first, and marks them dispatched."""
    if count <= 0:
        return []
    # One statement rather than a SELECT and an UPDATE: every finished item dispatches the next one.
    # The caller holds the batch's lock, so no other writer picks from the same items meanwhile.
    c = ITEMS.c
    picked = (
        select(c.id)
        .where(c.batch_id == batch_id, c.status == PENDING, c.dispatched_at.is_(None))
        .order_by(c.next_attempt_at, c.idx)
        .limit(count)
    )
    stmt = (
        update(ITEMS)
        .where(c.id.in_(picked.scalar_subquery()))
        .values(dispatched_at=now)
        .returning(c.id, c.next_attempt_at, c.idx)
    )
    rows = (await session.execute(stmt)).all()
    return [row[0] for row in sorted(rows, key=lambda row: (row[1], row[2]))]


async def count_dispatched(session: AsyncSession, batch_id: UUID) -> int:
    stmt = select(func.count()).where(
        Item.batch_id == batch_id, Item.status == PENDING, Item.dispatched_at.is_not(None)
    )
    return int((await session.execute(stmt)).scalar_one())


async def clear_dispatches(session: AsyncSession, batch_id: UUID) -> None:
    stmt = (
        update(Item)
        .where(Item.batch_id == batch_id, Item.status == PENDING, Item.dispatched_at.is_not(None))
        .values(dispatched_at=None)
    )
    await session.execute(stmt)


async def batches_of(session: AsyncSession, item_ids: Sequence[UUID]) -> list[UUID]:
    stmt = select(Item.batch_id).where(Item.id.in_(item_ids)).distinct()
    return sorted((await session.execute(stmt)).scalars())


async def undispatch(session: AsyncSession, batch_id: UUID, item_ids: Sequence[UUID]) -> int:
    """Marks those of the batch's items still pending and dispatched as not dispatched; how many."""
    stmt = update(Item).where(
        Item.batch_id == batch_id, Item.id.in_(item_ids), Item.status == PENDING, Item.dispatched_at.is_not(None)
    )
    return _rowcount(await session.execute(stmt.values(dispatched_at=None)))


async def claim_item(session: AsyncSession, item_id: UUID, *, now: datetime, lease: timedelta) -> int | None:
    """Takes a pending, dispatched item: the conditional update is the claim, so of two deliveries only one
    wins, and a stray delivery of an item the batch's window never dispatched (a redelivered message, a
    duplicate from the sweeper) takes nothing, so the window bounds the batch's concurrency.

    Returns the attempt number, which later fences the result: only that attempt may record it."""
    c = ITEMS.c
    stmt = (
        update(ITEMS)
        .where(c.id == item_id, c.status == PENDING, c.dispatched_at.is_not(None))
        .values(
            status=IN_PROGRESS,
            attempts=c.attempts + 1,
            lease_expires_at=now + lease,
            started_at=now,
            dispatched_at=None,
        )
        .returning(c.attempts)
    )
    attempt: int | None = (await session.execute(stmt)).scalar_one_or_none()
    return attempt


async def finish_attempt(
    session: AsyncSession,
    item_id: UUID,
    attempt: int,
    *,
    values: dict[str, Any],
    lease_expired_before: datetime | None = None,
) -> bool:
    """Ends attempt `attempt` of an in-progress item with `values`; False when that attempt no longer
    holds the item (the batch was cancelled, or the sweeper took it over). With `lease_expired_before`,
    only if its lease had expired by then (the sweeper's own condition)."""
    c = ITEMS.c
    conditions = [c.id == item_id, c.status == IN_PROGRESS, c.attempts == attempt]
    if lease_expired_before is not None:
        conditions.append(c.lease_expires_at < lease_expired_before)
    stmt = update(ITEMS).where(*conditions).values(lease_expires_at=None, **values)
    return _rowcount(await session.execute(stmt)) == 1


async def renew_leases(session: AsyncSession, attempts: Sequence[tuple[UUID, int]], *, until: datetime) -> int:
    """Extends the leases of these (item, attempt) claims, where that attempt still holds its item."""
    if not attempts:
        return 0
    ids = await _lock_free(session, tuple_(Item.id, Item.attempts).in_(attempts), Item.status == IN_PROGRESS)
    if not ids:
        return 0
    return _rowcount(await session.execute(update(Item).where(Item.id.in_(ids)).values(lease_expires_at=until)))


async def _lock_free(session: AsyncSession, *conditions: Any) -> list[UUID]:
    """Locks the items that meet `conditions` and no other transaction holds, in id order, and returns their
    ids. For the sweeper's statements over many items of many batches, taken without their batch's lock:
    waiting for a row that a control (which holds its batch, then locks the batch's items in its own order)
    holds could deadlock with it. A skipped row is seen again by the next pass. (SQLite: no row locks; its
    writers already run one at a time.)"""
    stmt = select(Item.id).where(*conditions).order_by(Item.id).with_for_update(skip_locked=True)
    return list((await session.execute(stmt)).scalars())


async def insert_generated(
    session: AsyncSession,
    *,
    generation_id: UUID,
    item_id: UUID,
    batch_id: UUID,
    idx: int,
    content: dict[str, Any],
    now: datetime,
) -> None:
    values = {"id": generation_id, "item_id": item_id, "batch_id": batch_id, "idx": idx, "content": content}
    await session.execute(insert(GENERATED).values(created_at=now, **values))


async def in_progress_items(session: AsyncSession, batch_id: UUID) -> list[Item]:
    stmt = select(Item).where(Item.batch_id == batch_id, Item.status == IN_PROGRESS).order_by(Item.idx)
    return list((await session.execute(stmt)).scalars())


async def set_status_where(
    session: AsyncSession, batch_id: UUID, from_statuses: Sequence[str], values: dict[str, Any]
) -> int:
    stmt = update(Item).where(Item.batch_id == batch_id, Item.status.in_(from_statuses)).values(**values)
    return _rowcount(await session.execute(stmt))


async def expired_leases(session: AsyncSession, *, now: datetime, limit: int) -> list[tuple[UUID, int]]:
    stmt = (
        select(Item.id, Item.attempts)
        .where(Item.status == IN_PROGRESS, Item.lease_expires_at < now)
        .order_by(Item.lease_expires_at)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in (await session.execute(stmt)).all()]


async def stale_dispatches(session: AsyncSession, *, before: datetime | None, limit: int) -> list[UUID]:
    """Dispatched items never claimed of active batches: dispatched before `before`, and due before it too
    (an item waiting out a retry delay is not lost); any, when None."""
    conditions = [Item.status == PENDING, Item.dispatched_at.is_not(None)]
    if before is not None:
        conditions += [Item.dispatched_at < before, Item.next_attempt_at < before]
    stmt = (
        select(Item.id)
        .join(Batch, Batch.id == Item.batch_id)
        .where(*conditions, Batch.status.in_(ACTIVE_STATUSES))
        .order_by(Item.dispatched_at)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def redispatch(
    session: AsyncSession, item_ids: Sequence[UUID], *, now: datetime, before: datetime | None = None
) -> list[UUID]:
    """Marks the items dispatched again, now; with `before`, only those still dispatched before it, so
    that of several sweepers that found the same lost dispatch only one queues it again."""
    conditions = [Item.id.in_(item_ids), Item.status == PENDING, Item.dispatched_at.is_not(None)]
    if before is not None:
        conditions.append(Item.dispatched_at < before)
    ids = await _lock_free(session, *conditions)
    if not ids:
        return []
    stmt = update(Item).where(Item.id.in_(ids)).values(dispatched_at=now).returning(Item.id)
    return list((await session.execute(stmt)).scalars())


async def undersupplied_batches(session: AsyncSession) -> list[UUID]:
    """Active, unpaused batches with pending work but fewer items in flight than their concurrency."""
    dispatched = (
        select(func.count())
        .where(Item.batch_id == Batch.id, Item.status == PENDING, Item.dispatched_at.is_not(None))
        .scalar_subquery()
    )
    undispatched = (
        select(Item.id).where(Item.batch_id == Batch.id, Item.status == PENDING, Item.dispatched_at.is_(None)).exists()
    )
    stmt = select(Batch.id).where(
        Batch.status.in_(("queued", "running")),
        Batch.in_progress_items + dispatched < Batch.concurrency,
        undispatched,
    )
    return list((await session.execute(stmt)).scalars())


async def feed_items(session: AsyncSession, batch_id: UUID, *, limit: int) -> list[Item]:
    """The items the feed shows (every item attempted at least once), the `limit` highest indexes."""
    stmt = select(Item).where(Item.batch_id == batch_id, Item.attempts > 0).order_by(Item.idx.desc()).limit(limit)
    return list(reversed(list((await session.execute(stmt)).scalars())))


async def batches_page(
    session: AsyncSession, owner_id: UUID, *, before: tuple[datetime, UUID] | None, limit: int
) -> list[Batch]:
    stmt = select(Batch).where(Batch.owner_id == owner_id)
    if before is not None:
        created, batch_id = before
        stmt = stmt.where(or_(Batch.created_at < created, and_(Batch.created_at == created, Batch.id < batch_id)))
    stmt = stmt.order_by(Batch.created_at.desc(), Batch.id.desc()).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def generated_page(session: AsyncSession, batch_id: UUID, *, after_index: int, limit: int) -> list[GeneratedItem]:
    stmt = (
        select(GeneratedItem)
        .where(GeneratedItem.batch_id == batch_id, GeneratedItem.idx > after_index)
        .order_by(GeneratedItem.idx)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def count_generated(session: AsyncSession, batch_id: UUID) -> int:
    stmt = select(func.count()).select_from(GeneratedItem).where(GeneratedItem.batch_id == batch_id)
    return int((await session.execute(stmt)).scalar_one())


async def count_items_by_status(session: AsyncSession, batch_id: UUID) -> dict[str, int]:
    stmt = select(Item.status, func.count()).where(Item.batch_id == batch_id).group_by(Item.status)
    return {status: int(n) for status, n in (await session.execute(stmt)).all()}


async def items_of_all_batches(session: AsyncSession) -> dict[ItemStatus, int]:
    """Items of every batch by status, summed from the batches' counters: no scan of the items."""
    sums = (
        await session.execute(
            select(
                func.coalesce(func.sum(Batch.total_items), 0),
                func.coalesce(func.sum(Batch.completed_items), 0),
                func.coalesce(func.sum(Batch.failed_items), 0),
                func.coalesce(func.sum(Batch.in_progress_items), 0),
                func.coalesce(func.sum(Batch.cancelled_items), 0),
            )
        )
    ).one()
    total, completed, failed, in_progress, cancelled = (int(v) for v in sums)
    return {
        ItemStatus.completed: completed,
        ItemStatus.failed: failed,
        ItemStatus.in_progress: in_progress,
        ItemStatus.cancelled: cancelled,
        ItemStatus.pending: total - completed - failed - in_progress - cancelled,
    }


async def count_batches_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Batch.status, func.count()).group_by(Batch.status))
    return {str(status): int(n) for status, n in rows.all()}


async def count_queued(session: AsyncSession) -> int:
    """Items dispatched to the work queue and not yet claimed."""
    stmt = select(func.count()).where(Item.status == PENDING, Item.dispatched_at.is_not(None))
    return int((await session.execute(stmt)).scalar_one())
