"""Fixtures for the webhook tests: a real receiver on loopback, pipelines in this process, a user's webhook."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import pytest
from sqlalchemy import select

from livebatch.clock import utcnow
from livebatch.db import Database
from livebatch.webhooks import service
from livebatch.webhooks.models import Delivery
from tests.batches.conftest import open_parts as open_parts  # worker parts with overrides, closed at the end
from tests.fakes.webhook_receiver import WebhookReceiver

# Fast enough for tests: retries after 0.2 s, 0.4 s, 0.8 s (each jittered down to half), a pass every 50 ms.
FAST = {
    "webhook_retry_base_s": 0.2,
    "webhook_retry_max_s": 2.0,
    "webhook_poll_s": 0.05,
    "webhook_timeout_s": 1.0,
    "webhook_allow_private": True,  # the receiver is on loopback
}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver().start()
    yield running
    running.stop()


async def set_webhook(db: Database, user_id: UUID, url: str) -> str:
    """Sets the user's webhook; returns its secret."""
    async with db.session() as session:
        _, secret = await service.set_webhook(session, user_id, url, now=utcnow(), allow_private=True)
        await session.commit()
    assert secret is not None
    return secret


async def deliveries(db: Database, batch_id: UUID | None = None) -> list[Delivery]:
    async with db.read_session() as session:
        stmt = select(Delivery).order_by(Delivery.created_at, Delivery.event_seq)
        if batch_id is not None:
            stmt = stmt.where(Delivery.batch_id == batch_id)
        return list((await session.execute(stmt)).scalars())
