"""The signed-in faculty member's webhook: set it, read it, remove it, see its deliveries, send one again.

Everything here is the caller's own: there is no id of a webhook to guess (it is the caller's), and a
delivery of someone else is a 403 that shows nothing of it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from livebatch.auth import FacultyUser
from livebatch.deps import ClockDep, ReadSessionDep, SessionDep, SettingsDep
from livebatch.errors import error_responses
from livebatch.webhooks import service
from livebatch.webhooks.schemas import DeliveryPage, DeliveryRead, WebhookPut, WebhookRead

router = APIRouter(prefix="/api/v1/me/webhook", tags=["webhooks"])
MINE = error_responses(401, 403, 404)


@router.get("", response_model=WebhookRead, response_model_exclude_none=True, responses=MINE)
async def read_webhook(session: ReadSessionDep, user: FacultyUser) -> WebhookRead:
    return WebhookRead.of(await service.get_webhook(session, user.id))


@router.put(
    "",
    response_model=WebhookRead,
    response_model_exclude_none=True,
    responses=error_responses(400, 401, 403, 413, 422),
)
async def put_webhook(
    body: WebhookPut, session: SessionDep, user: FacultyUser, settings: SettingsDep, now: ClockDep
) -> WebhookRead:
    """Sets the URL your batches' notifications are POSTed to. The answer that creates the webhook (or rotates
    its secret) holds the signing secret; no answer ever shows it again."""
    webhook, secret = await service.set_webhook(
        session,
        user.id,
        body.url,
        now=now(),
        allow_private=settings.webhook_allow_private,
        rotate_secret=body.rotate_secret,
    )
    read = WebhookRead.of(webhook, secret=secret)
    await session.commit()
    return read


@router.delete("", status_code=204, responses=MINE)
async def delete_webhook(session: SessionDep, user: FacultyUser) -> Response:
    await service.remove_webhook(session, user.id)
    await session.commit()
    return Response(status_code=204)


@router.get("/deliveries", response_model=DeliveryPage, responses=error_responses(401, 403, 422))
async def list_deliveries(
    session: ReadSessionDep,
    user: FacultyUser,
    limit: Annotated[int, Query(ge=1, le=200)] = service.RECENT_DELIVERIES,
) -> DeliveryPage:
    """Your latest deliveries, newest first: delivered, pending (with the next attempt) or dead."""
    rows = await service.recent_deliveries(session, user.id, limit=limit)
    return DeliveryPage(deliveries=[DeliveryRead.of(d) for d in rows])


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryRead,
    responses=error_responses(401, 403, 404, 409, 422),
)
async def redeliver(delivery_id: str, session: SessionDep, user: FacultyUser, now: ClockDep) -> DeliveryRead:
    """Sends a delivered or dead delivery again: the same id and body, with every attempt to come."""
    delivery = await service.redeliver(session, user.id, service.parse_delivery_id(delivery_id), now=now())
    read = DeliveryRead.of(delivery)
    await session.commit()
    return read
