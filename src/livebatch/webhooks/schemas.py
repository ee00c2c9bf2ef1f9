"""Request and response bodies of the webhook API (camelCase, like the batch API's additions)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from livebatch.clock import iso, iso_or_none
from livebatch.webhooks.models import Delivery, Webhook
from livebatch.webhooks.signature import HEADER
from livebatch.webhooks.urls import MAX_URL_LENGTH


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


class WebhookPut(CamelModel):
    """`PUT /api/v1/me/webhook`: where your batches' notifications go."""

    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=True)

    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH, description="http:// or https:// URL to POST to")
    rotate_secret: bool = Field(default=False, description="Replace the signing secret (the new one is shown once)")


class WebhookRead(CamelModel):
    url: str
    created_at: str
    updated_at: str
    signature_header: str = Field(default=HEADER, description="The header that carries the signature")
    secret: str | None = Field(
        default=None,
        description="The signing secret: only in the answer that created or rotated it, never again",
    )

    @classmethod
    def of(cls, webhook: Webhook, *, secret: str | None = None) -> WebhookRead:
        return cls(
            url=webhook.url,
            created_at=iso(webhook.created_at),
            updated_at=iso(webhook.updated_at),
            secret=secret,
        )


class DeliveryRead(CamelModel):
    id: str
    event: str
    batch_id: str
    status: Literal["pending", "delivered", "dead"]
    attempts: int
    created_at: str
    last_attempt_at: str | None
    next_attempt_at: str | None = Field(description="When a pending delivery is tried next")
    delivered_at: str | None
    last_status_code: int | None = Field(description="The receiver's HTTP status at the last attempt")
    last_error: str | None

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryRead:
        pending = delivery.status == "pending"
        return cls(
            id=str(delivery.id),
            event=delivery.event,
            batch_id=str(delivery.batch_id),
            status=delivery.status,  # type: ignore[arg-type]
            attempts=delivery.attempts,
            created_at=iso(delivery.created_at),
            last_attempt_at=iso_or_none(delivery.last_attempt_at),
            next_attempt_at=iso(delivery.next_attempt_at) if pending else None,
            delivered_at=iso_or_none(delivery.delivered_at),
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
        )


class DeliveryPage(CamelModel):
    deliveries: list[DeliveryRead]
