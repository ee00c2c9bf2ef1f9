"""A user's webhook (set, read, remove), the outbox its deliveries are queued in, and sending one again.

`enqueue` is what the batches call, in the unit of work of the event it announces; it writes one row and
sends nothing. The deliverer (deliverer.py) sends it later.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.errors import BadRequest, Conflict, Forbidden, NotFound
from livebatch.webhooks import repository
from livebatch.webhooks.models import Delivery, DeliveryStatus, Webhook
from livebatch.webhooks.signature import new_secret
from livebatch.webhooks.urls import UnsafeUrl, check_url

RECENT_DELIVERIES = 50


class WebhookNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No webhook is set; PUT one first.")


class DeliveryNotFound(NotFound):
    def __init__(self, delivery_id: object) -> None:
        super().__init__(f"Delivery {delivery_id} does not exist.")


class NotDeliveryOwner(Forbidden):
    def __init__(self) -> None:
        super().__init__("This delivery belongs to someone else.")


class DeliveryStillPending(Conflict):
    code = "INVALID_STATE"


def parse_delivery_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise DeliveryNotFound(raw) from None


async def set_webhook(
    session: AsyncSession, user_id: UUID, url: str, *, now: datetime, allow_private: bool, rotate_secret: bool = False
) -> tuple[Webhook, str | None]:
    """Sets the user's webhook URL; returns it, and its secret when it is new (created, or rotated)."""
    try:
        checked = check_url(url, allow_private=allow_private)
    except UnsafeUrl as exc:
        raise BadRequest(f"url: {exc}") from None
    webhook = await repository.get_webhook(session, user_id)
    if webhook is None:
        secret = new_secret()
        return await repository.add_webhook(session, user_id, checked, secret, now=now), secret
    webhook.url, webhook.updated_at = checked, now
    shown = None
    if rotate_secret:
        webhook.secret = shown = new_secret()
    await session.flush()
    return webhook, shown


async def get_webhook(session: AsyncSession, user_id: UUID) -> Webhook:
    webhook = await repository.get_webhook(session, user_id)
    if webhook is None:
        raise WebhookNotFound()
    return webhook


async def find_webhook(session: AsyncSession, user_id: UUID) -> Webhook | None:
    return await repository.get_webhook(session, user_id)


async def remove_webhook(session: AsyncSession, user_id: UUID) -> None:
    """Removes it; deliveries still due are then marked dead when their turn comes (nothing to send them to)."""
    if not await repository.delete_webhook(session, user_id):
        raise WebhookNotFound()


async def recent_deliveries(session: AsyncSession, user_id: UUID, *, limit: int = RECENT_DELIVERIES) -> list[Delivery]:
    return await repository.deliveries_of(session, user_id, limit=limit)


async def redeliver(session: AsyncSession, user_id: UUID, delivery_id: UUID, *, now: datetime) -> Delivery:
    """Sends a delivered or dead delivery again (the same id and body, every attempt to come)."""
    delivery = await repository.get_delivery(session, delivery_id)
    if delivery is None:
        raise DeliveryNotFound(delivery_id)
    if delivery.user_id != user_id:
        raise NotDeliveryOwner()
    if delivery.status == DeliveryStatus.pending:
        raise DeliveryStillPending("This delivery is still pending; it will be tried again by itself.")
    if await repository.get_webhook(session, user_id) is None:
        raise WebhookNotFound()
    await repository.requeue_delivery(session, delivery.id, now=now)
    await session.refresh(delivery)
    return delivery


async def enqueue(
    session: AsyncSession,
    *,
    user_id: UUID,
    batch_id: UUID,
    event: str,
    event_seq: int,
    data: dict[str, Any],
    now: datetime,
) -> UUID:
    """Queues one delivery of `data` as event `event` to the user's webhook (call only when the user has one)."""
    delivery = Delivery(
        id=uuid4(),
        user_id=user_id,
        batch_id=batch_id,
        event=event,
        event_seq=event_seq,
        data=json.dumps(data, separators=(",", ":"), ensure_ascii=False),
        status=DeliveryStatus.pending.value,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    await repository.add_delivery(session, delivery)
    return delivery.id
