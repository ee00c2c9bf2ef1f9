"""Every query of webhooks and their deliveries, session first, named for the question it answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.webhooks.models import Delivery, DeliveryStatus, Webhook

PENDING, DELIVERED, DEAD = DeliveryStatus.pending.value, DeliveryStatus.delivered.value, DeliveryStatus.dead.value


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount


async def get_webhook(session: AsyncSession, user_id: UUID) -> Webhook | None:
    return await session.get(Webhook, user_id)


async def webhooks_of(session: AsyncSession, user_ids: Sequence[UUID]) -> dict[UUID, Webhook]:
    rows = await session.execute(select(Webhook).where(Webhook.user_id.in_(user_ids)))
    return {webhook.user_id: webhook for webhook in rows.scalars()}


async def add_webhook(session: AsyncSession, user_id: UUID, url: str, secret: str, *, now: datetime) -> Webhook:
    webhook = Webhook(user_id=user_id, url=url, secret=secret, created_at=now, updated_at=now)
    session.add(webhook)
    await session.flush()
    return webhook


async def delete_webhook(session: AsyncSession, user_id: UUID) -> bool:
    return _rowcount(await session.execute(delete(Webhook).where(Webhook.user_id == user_id))) == 1


async def add_delivery(session: AsyncSession, delivery: Delivery) -> None:
    session.add(delivery)
    await session.flush()


async def get_delivery(session: AsyncSession, delivery_id: UUID) -> Delivery | None:
    return await session.get(Delivery, delivery_id)


async def deliveries_of(session: AsyncSession, user_id: UUID, *, limit: int) -> list[Delivery]:
    stmt = (
        select(Delivery)
        .where(Delivery.user_id == user_id)
        .order_by(Delivery.created_at.desc(), Delivery.id.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a deliverer now holds: its attempt number fences the outcome it may record."""

    id: UUID
    user_id: UUID
    batch_id: UUID
    event: str
    data: str
    created_at: datetime
    attempt: int


def _due(now: datetime) -> Any:
    free = or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at < now)
    return and_(Delivery.status == PENDING, Delivery.next_attempt_at <= now, free)


async def any_due(session: AsyncSession, *, now: datetime) -> bool:
    """Whether any delivery is due now (a cheap read before a claim, which writes)."""
    stmt = select(Delivery.id).where(_due(now)).limit(1)
    return (await session.execute(stmt)).first() is not None


async def claim_due(session: AsyncSession, *, now: datetime, lease: timedelta, limit: int) -> list[Claimed]:
    """Takes up to `limit` due deliveries (pending, due, no live lease), soonest first, under a lease. Rows another
    deliverer holds locked are skipped (PostgreSQL); SQLite's single writer takes them one claim at a time."""
    due = select(Delivery.id).where(_due(now)).order_by(Delivery.next_attempt_at).limit(limit)
    ids = list((await session.execute(due.with_for_update(skip_locked=True))).scalars())
    if not ids:
        return []
    stmt = (
        update(Delivery)
        .where(Delivery.id.in_(ids), _due(now))
        .values(attempts=Delivery.attempts + 1, lease_expires_at=now + lease, last_attempt_at=now)
        .returning(
            Delivery.id,
            Delivery.user_id,
            Delivery.batch_id,
            Delivery.event,
            Delivery.data,
            Delivery.created_at,
            Delivery.attempts,
        )
    )
    rows = (await session.execute(stmt)).all()
    return sorted((Claimed(*row) for row in rows), key=lambda c: (c.created_at, c.id))


async def record_outcome(
    session: AsyncSession,
    delivery_id: UUID,
    attempt: int,
    *,
    now: datetime,
    status_code: int | None,
    error: str | None,
    retry_at: datetime | None,
) -> bool:
    """Ends an attempt: delivered when `error` is None, else pending again at `retry_at`, or dead when None.
    False when that attempt no longer holds the delivery (its lease expired and another took it)."""
    values: dict[str, Any] = {"lease_expires_at": None, "last_status_code": status_code, "last_error": error}
    if error is None:
        values |= {"status": DELIVERED, "delivered_at": now}
    elif retry_at is not None:
        values |= {"next_attempt_at": retry_at}
    else:
        values |= {"status": DEAD}
    stmt = (
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.attempts == attempt, Delivery.status == PENDING)
        .values(**values)
    )
    return _rowcount(await session.execute(stmt)) == 1


async def requeue_delivery(session: AsyncSession, delivery_id: UUID, *, now: datetime) -> None:
    """Due again now, with every attempt to come."""
    stmt = (
        update(Delivery)
        .where(Delivery.id == delivery_id)
        .values(status=PENDING, attempts=0, next_attempt_at=now, lease_expires_at=None, delivered_at=None)
    )
    await session.execute(stmt)
