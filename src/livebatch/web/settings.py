"""The settings page: the faculty member's webhook (its URL, a new secret, its removal) and its deliveries,
dead ones included. Server-rendered; `static/settings.js` calls the webhook API (webhooks/api.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from livebatch.auth import FacultyUser
from livebatch.deps import ReadSessionDep, SettingsDep
from livebatch.web.pages import render
from livebatch.webhooks import service
from livebatch.webhooks.schemas import DeliveryRead, WebhookRead
from livebatch.webhooks.signature import HEADER

router = APIRouter(include_in_schema=False)


@router.get("/faculty/settings")
async def settings_page(
    request: Request, session: ReadSessionDep, user: FacultyUser, settings: SettingsDep
) -> Response:
    webhook = await service.find_webhook(session, user.id)
    deliveries = [DeliveryRead.of(d) for d in await service.recent_deliveries(session, user.id)]
    context = {
        "user": user,
        "nav": "settings",
        "webhook": WebhookRead.of(webhook) if webhook else None,
        "deliveries": deliveries,
        "dead": sum(1 for d in deliveries if d.status == "dead"),
        "header": HEADER,
        "allow_private": settings.webhook_allow_private,
        "max_attempts": settings.webhook_max_attempts,
    }
    return render(request, "settings.html", context)
