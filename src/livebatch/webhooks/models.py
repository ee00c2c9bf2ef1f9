"""A user's webhook, and the outbox of its deliveries.

A delivery row is written in the transaction that appends the event it announces (`batch.complete`, a guardrail
`batch.paused`), so it exists exactly when the event does; the deliverer (deliverer.py) sends it later, never
the request or the worker that wrote it. The row names its batch by id only: the outbox knows nothing of
batches (and a batch's events may be pruned while its deliveries are still due).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID, uuid4

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from livebatch.db import Base


class DeliveryStatus(StrEnum):
    pending = "pending"  # due at `next_attempt_at` (or being sent, under a lease)
    delivered = "delivered"  # the receiver answered 2xx
    dead = "dead"  # every attempt failed, or the URL was refused: it is shown, and may be sent again by hand


class Webhook(Base):
    """One per user. The secret signs every delivery; it is kept as it is (HMAC needs it) and shown once."""

    __tablename__ = "webhooks"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Delivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The deliverer's question: what is due now.
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        # The settings page's: a user's latest deliveries.
        Index("ix_webhook_deliveries_user_created", "user_id", "created_at"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    batch_id: Mapped[UUID]
    event: Mapped[str] = mapped_column(String(32))
    event_seq: Mapped[int]
    data: Mapped[str] = mapped_column(Text)  # the JSON of the body's `data`, fixed when the event happened
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.pending.value)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    lease_expires_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
