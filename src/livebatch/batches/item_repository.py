"""Every query of a batch's items, session first, named for the question it answers.

An item is *dispatched* while it is pending and on its way to a worker (`dispatched_at` set): at most a
batch's concurrency of its items are dispatched or in progress. The statements every item runs (claim,
finish, dispatch) are plain Core on the item table: an ORM-enabled UPDATE costs several times the
Python work of the same Core one, and nothing here needs the ORM's part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import BigInteger, Integer, and_, bindparam, func, insert, or_, select, tuple_, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.batches.accounting import Charge
from livebatch.batches.events import ErrorKind
from livebatch.batches.failures import FailureCount
from livebatch.batches.models import Batch, Item
from livebatch.batches.status import ACTIVE, OPEN_ITEMS, WORKING, ItemStatus
from livebatch.courses.models import Course
from livebatch.db import Base

PENDING, IN_PROGRESS = ItemStatus.pending, ItemStatus.in_progress
ITEMS = Base.metadata.tables["batch_items"]
_c = ITEMS.c
DISPATCHED = and_(_c.status == PENDING, _c.dispatched_at.is_not(None))
UNDISPATCHED = and_(_c.status == PENDING, _c.dispatched_at.is_(None))


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount


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
        {"id": uuid4(), "batch_id": batch_id, "idx": i, "difficulty": d, "status": PENDING, "next_attempt_at": now}
        for i, d in enumerate(difficulties)
    ]
    for start in range(0, len(rows), 5000):
        await session.execute(insert(Item), rows[start : start + 5000])


async def mark_dispatched(session: AsyncSession, batch_id: UUID, count: int, *, now: datetime) -> list[UUID]:
    """Picks up to `count` pending, undispatched items, soonest due first, and marks them dispatched."""
    if count <= 0:
        return []
    # One statement rather than a SELECT and an UPDATE: every finished item dispatches the next one.
    # The caller holds the batch's lock, so no other writer picks from the same items meanwhile.
    picked = (
        select(_c.id).where(_c.batch_id == batch_id, UNDISPATCHED).order_by(_c.next_attempt_at, _c.idx).limit(count)
    )
    stmt = (
        update(ITEMS)
        .where(_c.id.in_(picked.scalar_subquery()))
        .values(dispatched_at=now)
        .returning(_c.id, _c.next_attempt_at, _c.idx)
    )
    rows = (await session.execute(stmt)).all()
    return [row[0] for row in sorted(rows, key=lambda row: (row[1], row[2]))]


async def count_dispatched(session: AsyncSession, batch_id: UUID) -> int:
    stmt = select(func.count()).select_from(ITEMS).where(_c.batch_id == batch_id, DISPATCHED)
    return int((await session.execute(stmt)).scalar_one())


async def count_all_dispatched(session: AsyncSession) -> int:
    """Items of every batch dispatched to the work queue and not yet claimed."""
    stmt = select(func.count()).select_from(ITEMS).where(DISPATCHED)
    return int((await session.execute(stmt)).scalar_one())


async def clear_dispatches(session: AsyncSession, batch_id: UUID) -> None:
    await session.execute(update(ITEMS).where(_c.batch_id == batch_id, DISPATCHED).values(dispatched_at=None))


async def batches_of(session: AsyncSession, item_ids: Sequence[UUID]) -> list[UUID]:
    stmt = select(Item.batch_id).where(Item.id.in_(item_ids)).distinct()
    return sorted((await session.execute(stmt)).scalars())


async def undispatch(session: AsyncSession, batch_id: UUID, item_ids: Sequence[UUID]) -> int:
    """Marks those of the batch's items still dispatched as not dispatched; how many."""
    stmt = update(ITEMS).where(_c.batch_id == batch_id, _c.id.in_(item_ids), DISPATCHED).values(dispatched_at=None)
    return _rowcount(await session.execute(stmt))


@dataclass(frozen=True, slots=True)
class Claimed:
    """What a claim took: the attempt number (it fences the result), the item's requeues (its draw), and
    whether the item was waiting for a retry (the batch's `retrying_items` counts it until now)."""

    attempt: int
    requeues: int
    was_retrying: bool


async def claim_item(
    session: AsyncSession, item_id: UUID, *, now: datetime, lease: timedelta, owner: str | None = None
) -> Claimed | None:
    """Takes a dispatched item: the conditional update is the claim, so of two deliveries only one wins,
    and a stray delivery of an item the batch's window never dispatched (a redelivered message, a duplicate
    from the sweeper) takes nothing, so the window bounds the batch's concurrency.

    Returns the attempt number, which later fences the result: only that attempt may record it."""
    stmt = (
        update(ITEMS)
        .where(_c.id == item_id, DISPATCHED)
        .values(
            status=IN_PROGRESS,
            attempts=_c.attempts + 1,
            lease_expires_at=now + lease,
            lease_owner=owner,
            started_at=now,
            dispatched_at=None,
        )
        .returning(_c.attempts, _c.requeues, _c.will_retry)
    )
    row = (await session.execute(stmt)).one_or_none()
    return None if row is None else Claimed(row[0], row[1], bool(row[2]))


# What an attempt's usage adds to its item, built once: the statement every attempt runs gets these
# expressions, and their values as parameters (`_usage_params`), rather than new expressions each time.
_ADD_USAGE = {
    "prompt_tokens": _c.prompt_tokens + bindparam("used_prompt_tokens", type_=Integer()),
    "completion_tokens": _c.completion_tokens + bindparam("used_completion_tokens", type_=Integer()),
    "cost_nanos": _c.cost_nanos + bindparam("used_cost_nanos", type_=BigInteger()),
    "unpriced_attempts": _c.unpriced_attempts + bindparam("used_unpriced", type_=Integer()),
    "usage_attempt": bindparam("used_attempt", type_=Integer()),
}


def _usage(charge: Charge | None) -> dict[str, Any]:
    """The usage columns to set when an attempt that used `charge` ends (none without a charge)."""
    return {} if charge is None else _ADD_USAGE


def _usage_params(charge: Charge | None, attempt: int) -> dict[str, Any]:
    if charge is None:
        return {}
    return {
        "used_prompt_tokens": charge.prompt_tokens,
        "used_completion_tokens": charge.completion_tokens,
        "used_cost_nanos": charge.cost_nanos or 0,
        "used_unpriced": charge.unpriced,
        "used_attempt": attempt,
    }


async def record_completion(
    session: AsyncSession,
    item_id: UUID,
    attempt: int,
    *,
    generation_id: UUID,
    duration_ms: int,
    now: datetime,
    charge: Charge | None = None,
) -> bool:
    """Ends the attempt as completed, adding what it used; False when that attempt no longer holds the item."""
    return await _finish_attempt(
        session,
        item_id,
        attempt,
        status=ItemStatus.completed,
        generation_id=generation_id,
        duration_ms=duration_ms,
        finished_at=now,
        will_retry=False,
        params=_usage_params(charge, attempt),
        **_usage(charge),
    )


async def add_usage_of_discarded(session: AsyncSession, item_id: UUID, attempt: int, charge: Charge) -> bool:
    """Adds what an attempt used whose outcome was discarded (its batch was cancelled or failed meanwhile, or
    its lease had expired): the tokens were spent all the same. False when that attempt's usage was already
    added (a second recording of it), or when the item was claimed again since."""
    stmt = update(ITEMS).where(_c.id == item_id, _c.usage_attempt < attempt).values(**_usage(charge))
    return _rowcount(await session.execute(stmt, _usage_params(charge, attempt))) == 1


async def record_failure(
    session: AsyncSession,
    item_id: UUID,
    attempt: int,
    *,
    kind: ErrorKind,
    message: str,
    retry_at: datetime | None,
    now: datetime,
    lease_expired_before: datetime | None = None,
    charge: Charge | None = None,
) -> bool:
    """Ends the attempt as failed, adding what it used: pending again, due at `retry_at`, or failed for good
    when None. False when that attempt no longer holds the item; with `lease_expired_before`, also when its
    lease had not expired by then (the sweeper's own condition)."""
    values: dict[str, Any] = {"last_error": message, "last_error_kind": kind, "will_retry": retry_at is not None}
    values |= _usage(charge)
    if retry_at is not None:
        values |= {"status": PENDING, "next_attempt_at": retry_at, "dispatched_at": None}
    else:
        values |= {"status": ItemStatus.failed}
    return await _finish_attempt(
        session,
        item_id,
        attempt,
        finished_at=now,
        expired_before=lease_expired_before,
        params=_usage_params(charge, attempt),
        **values,
    )


async def _finish_attempt(
    session: AsyncSession,
    item_id: UUID,
    attempt: int,
    *,
    expired_before: datetime | None = None,
    params: dict[str, Any] | None = None,
    **values: object,
) -> bool:
    conditions = [_c.id == item_id, _c.status == IN_PROGRESS, _c.attempts == attempt]
    if expired_before is not None:
        conditions.append(_c.lease_expires_at < expired_before)
    stmt = update(ITEMS).where(*conditions).values(lease_expires_at=None, **values)
    return _rowcount(await session.execute(stmt, params or {})) == 1


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


async def in_progress_items(session: AsyncSession, batch_id: UUID) -> list[Item]:
    stmt = select(Item).where(Item.batch_id == batch_id, Item.status == IN_PROGRESS).order_by(Item.idx)
    return list((await session.execute(stmt)).scalars())


async def cancel_open_items(session: AsyncSession, batch_id: UUID) -> int:
    """Cancels the batch's pending and in-progress items; how many."""
    stmt = (
        update(Item)
        .where(Item.batch_id == batch_id, Item.status.in_(OPEN_ITEMS))
        .values(status=ItemStatus.cancelled, lease_expires_at=None, dispatched_at=None)
    )
    return _rowcount(await session.execute(stmt))


async def requeue_failed_items(
    session: AsyncSession,
    batch_id: UUID,
    *,
    now: datetime,
    errors: Sequence[tuple[str | None, str | None]] | None = None,
) -> int:
    """Makes the batch's failed items pending again, with every attempt to come and a fresh draw; how many.
    With `errors`, only those whose last (kind, message) is one of them."""
    values = {
        "status": PENDING,
        "attempts": 0,
        "requeues": Item.requeues + 1,
        "next_attempt_at": now,
        "dispatched_at": None,
        "last_error": None,
        "last_error_kind": None,
        "will_retry": False,
        "usage_attempt": 0,  # attempts count from 1 again: so does the fence of their usage
    }
    failed = (Item.batch_id == batch_id, Item.status == ItemStatus.failed)
    if errors is None:
        return _rowcount(await session.execute(update(Item).where(*failed).values(**values)))
    requeued = 0
    pairs = list(errors)
    for start in range(0, len(pairs), 200):  # bounded statements, however many distinct messages
        chunk = pairs[start : start + 200]
        stmt = update(Item).where(*failed, tuple_(Item.last_error_kind, Item.last_error).in_(chunk)).values(**values)
        requeued += _rowcount(await session.execute(stmt))
    return requeued


async def failure_counts(session: AsyncSession, batch_id: UUID) -> list[FailureCount]:
    """The batch's items failed for good, counted by exact (kind, message): few rows, however many items."""
    stmt = (
        select(Item.last_error_kind, Item.last_error, func.count())
        .where(Item.batch_id == batch_id, Item.status == ItemStatus.failed)
        .group_by(Item.last_error_kind, Item.last_error)
    )
    return [FailureCount(kind, message, int(n)) for kind, message, n in (await session.execute(stmt)).all()]


async def batches_claimed_by(session: AsyncSession, owner: str) -> list[UUID]:
    """The batches with items in progress under this lease owner's claims."""
    stmt = select(_c.batch_id).where(_c.status == IN_PROGRESS, _c.lease_owner == owner).distinct()
    return list((await session.execute(stmt)).scalars())


async def release_claims(session: AsyncSession, batch_id: UUID, owner: str) -> list[bool]:
    """The batch's items in progress under this owner's claims, pending again as if their attempt had never
    started (its number is taken again by the next claim); for each, whether it was waiting for a retry."""
    stmt = (
        update(ITEMS)
        .where(_c.batch_id == batch_id, _c.status == IN_PROGRESS, _c.lease_owner == owner)
        .values(status=PENDING, attempts=_c.attempts - 1, lease_expires_at=None, lease_owner=None, dispatched_at=None)
        .returning(_c.will_retry)
    )
    return [bool(row[0]) for row in (await session.execute(stmt)).all()]


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
    conditions = [DISPATCHED]
    if before is not None:
        conditions += [_c.dispatched_at < before, _c.next_attempt_at < before]
    stmt = (
        select(_c.id)
        .join(Batch, Batch.id == _c.batch_id)
        .where(*conditions, Batch.status.in_(ACTIVE))
        .order_by(_c.dispatched_at)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def redispatch(
    session: AsyncSession, item_ids: Sequence[UUID], *, now: datetime, before: datetime | None = None
) -> list[UUID]:
    """Marks the items dispatched again, now; with `before`, only those still dispatched before it, so
    that of several sweepers that found the same lost dispatch only one queues it again."""
    conditions = [_c.id.in_(item_ids), DISPATCHED]
    if before is not None:
        conditions.append(_c.dispatched_at < before)
    ids = await _lock_free(session, *conditions)
    if not ids:
        return []
    stmt = update(Item).where(Item.id.in_(ids)).values(dispatched_at=now).returning(Item.id)
    return list((await session.execute(stmt)).scalars())


async def undersupplied_batches(session: AsyncSession) -> list[UUID]:
    """Working batches with undispatched work but fewer items in flight than their concurrency."""
    of_batch = _c.batch_id == Batch.id
    dispatched = select(func.count()).select_from(ITEMS).where(of_batch, DISPATCHED).scalar_subquery()
    undispatched = select(_c.id).where(of_batch, UNDISPATCHED).exists()
    stmt = select(Batch.id).where(
        Batch.status.in_(WORKING), Batch.in_progress_items + dispatched < Batch.concurrency, undispatched
    )
    return list((await session.execute(stmt)).scalars())


@dataclass(frozen=True, slots=True)
class FeedRow:
    """What a row of the feed shows of an item (`schemas.FeedEntry.of`): a thousand of them are read with
    every read of a batch, so only these columns, not whole rows made into entities."""

    id: UUID
    idx: int
    status: ItemStatus
    attempts: int
    next_attempt_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    generation_id: UUID | None
    last_error: str | None
    last_error_kind: str | None
    will_retry: bool


FEED_COLUMNS = tuple(getattr(Item, name) for name in FeedRow.__dataclass_fields__)


async def feed_items(session: AsyncSession, batch_id: UUID, *, limit: int) -> list[FeedRow]:
    """The items the feed shows (every item attempted at least once, or queued again by "Retry failed"), the
    `limit` highest indexes, oldest first."""
    shown = or_(Item.attempts > 0, Item.requeues > 0)
    stmt = select(*FEED_COLUMNS).where(Item.batch_id == batch_id, shown).order_by(Item.idx.desc()).limit(limit)
    rows = (await session.execute(stmt)).all()
    return [FeedRow(*row) for row in reversed(rows)]


async def count_items_by_status(session: AsyncSession, batch_id: UUID) -> dict[str, int]:
    stmt = select(Item.status, func.count()).where(Item.batch_id == batch_id).group_by(Item.status)
    return {str(status): int(n) for status, n in (await session.execute(stmt)).all()}


async def count_retrying(session: AsyncSession, batch_id: UUID) -> int:
    """Items of the batch pending again after a failed attempt (what `retrying_items` counts)."""
    stmt = select(func.count()).select_from(ITEMS).where(_c.batch_id == batch_id, _c.status == PENDING, _c.will_retry)
    return int((await session.execute(stmt)).scalar_one())
