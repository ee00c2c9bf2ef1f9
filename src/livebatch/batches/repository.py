"""Every query of batch rows and their generated items, session first, named for the question it answers.

Item rows have their own module (item_repository.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.batches.models import Batch, GeneratedItem, Item
from livebatch.batches.status import ACTIVE, TERMINAL, BatchStatus, ItemStatus
from livebatch.db import Base

GENERATED = Base.metadata.tables["generated_items"]


async def get_batch(session: AsyncSession, batch_id: UUID) -> Batch | None:
    return await session.get(Batch, batch_id)


async def lock_batch(session: AsyncSession, batch_id: UUID) -> Batch | None:
    """The batch row, locked for this transaction (SQLite's BEGIN IMMEDIATE already holds the lock).

    Every writing transaction locks its batch first and its items after, so writers never deadlock."""
    stmt = select(Batch).where(Batch.id == batch_id).with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def add_batch(
    session: AsyncSession,
    *,
    owner_id: UUID,
    course_id: str,
    config: dict[str, Any],
    concurrency: int,
    item_prior_ms: int,
    total_items: int,
    now: datetime,
    currency: str = "USD",
) -> Batch:
    batch = Batch(
        owner_id=owner_id,
        course_id=course_id,
        config=config,
        status=BatchStatus.queued,
        concurrency=concurrency,
        item_prior_ms=item_prior_ms,
        total_items=total_items,
        completion_window=[0],
        currency=currency,
        created_at=now,
    )
    session.add(batch)
    await session.flush()
    return batch


async def count_active_batches(session: AsyncSession, owner_id: UUID) -> int:
    stmt = select(func.count()).where(Batch.owner_id == owner_id, Batch.status.in_(ACTIVE))
    return int((await session.execute(stmt)).scalar_one())


async def count_items_created_since(session: AsyncSession, owner_id: UUID, since: datetime) -> int:
    """Items in the owner's batches created since then, whatever became of them (cancelled ones too)."""
    stmt = select(func.coalesce(func.sum(Batch.total_items), 0)).where(
        Batch.owner_id == owner_id, Batch.created_at >= since
    )
    return int((await session.execute(stmt)).scalar_one())


async def batches_page(
    session: AsyncSession, owner_id: UUID, *, before: tuple[datetime, UUID] | None, limit: int
) -> list[Batch]:
    stmt = select(Batch).where(Batch.owner_id == owner_id)
    if before is not None:
        created, batch_id = before
        stmt = stmt.where(or_(Batch.created_at < created, and_(Batch.created_at == created, Batch.id < batch_id)))
    stmt = stmt.order_by(Batch.created_at.desc(), Batch.id.desc()).limit(limit)
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
    await session.execute(insert(GENERATED).values(answer=content.get("answer"), created_at=now, **values))


async def generated_page(
    session: AsyncSession, batch_id: UUID, *, after_index: int, limit: int
) -> list[tuple[GeneratedItem, Item]]:
    """Generated items after `after_index`, each with its item row (what its attempts used)."""
    stmt = (
        select(GeneratedItem, Item)
        .join(Item, Item.id == GeneratedItem.item_id)
        .where(GeneratedItem.batch_id == batch_id, GeneratedItem.idx > after_index)
        .order_by(GeneratedItem.idx)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in (await session.execute(stmt)).all()]


async def count_answer_keys(session: AsyncSession, batch_id: UUID) -> dict[str, int]:
    """How many of the batch's generated items each letter keys (from the batch-and-answer index)."""
    key = GeneratedItem.answer
    stmt = select(key, func.count()).where(GeneratedItem.batch_id == batch_id).group_by(key)
    return {str(letter): int(n) for letter, n in (await session.execute(stmt)).all()}


async def count_generated(session: AsyncSession, batch_id: UUID) -> int:
    stmt = select(func.count()).select_from(GeneratedItem).where(GeneratedItem.batch_id == batch_id)
    return int((await session.execute(stmt)).scalar_one())


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


async def prunable_batches(session: AsyncSession, *, finished_before: datetime, limit: int) -> list[UUID]:
    """Finished batches that ended before `finished_before` and whose log holds more than its last event."""
    stmt = (
        select(Batch.id)
        .where(
            Batch.status.in_(TERMINAL),
            Batch.completed_at < finished_before,
            Batch.pruned_through < Batch.last_seq - 1,
        )
        .order_by(Batch.completed_at, Batch.id)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())
