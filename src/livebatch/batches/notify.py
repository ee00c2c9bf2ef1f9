"""Who hears of a batch outside its page: the owner's webhook, through the durable outbox (webhooks/).

Called by `lifecycle.append` for every event it appends, in the same unit of work: a delivery row exists
exactly when its event does, and nothing is sent from here (the deliverer sends it later). Two events are
announced: `batch.complete`, always, and a `batch.paused` that carries a guardrail `reason` (the batch paused
itself: `budget_reached`, `error_rate`); a pause by a person carries none and is not announced.

A failure here never fails the batch: the outbox row is written in a savepoint, and an error is logged and
rolled back to it, leaving the batch's own changes in place.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from livebatch.batches.events import BatchEvent
from livebatch.batches.models import Batch
from livebatch.courses import repository as courses
from livebatch.uow import UnitOfWork
from livebatch.webhooks import service as webhooks

logger = logging.getLogger("livebatch.webhooks")

COMPLETE, PAUSED = "batch.complete", "batch.paused"
# The events this module may announce: `lifecycle.append` calls it for these names only.
EVENTS = frozenset({COMPLETE, PAUSED})
# Why a batch pauses itself (the guardrails). A pause with one of these reasons is announced.
GUARD_REASONS = frozenset({"budget_reached", "error_rate"})


async def event_appended(uow: UnitOfWork, batch: Batch, event: BatchEvent, *, seq: int, now: datetime) -> None:
    """Queues the owner's webhook delivery for `event` if it is one to announce."""
    payload: dict[str, Any] = json.loads(event.to_json())
    if event.name == COMPLETE:
        await _announce(uow, batch, COMPLETE, payload, seq=seq, now=now)
    elif event.name == PAUSED and payload.get("reason") in GUARD_REASONS:
        await guardrail_paused(uow, batch, payload, seq=seq, now=now)


async def guardrail_paused(uow: UnitOfWork, batch: Batch, payload: dict[str, Any], *, seq: int, now: datetime) -> None:
    """The hook for a guardrail pause: queues a `batch.paused` delivery with the pause's payload (its `reason`)
    and the batch's counts. `event_appended` calls it for a `batch.paused` whose `reason` is a guard reason;
    call it yourself, in the pause's unit of work, for a pause appended some other way."""
    counts = {
        "totalItems": batch.total_items,
        "completedItems": batch.completed_items,
        "failedItems": batch.failed_items,
    }
    await _announce(uow, batch, PAUSED, counts | payload, seq=seq, now=now)


async def _announce(
    uow: UnitOfWork, batch: Batch, name: str, payload: dict[str, Any], *, seq: int, now: datetime
) -> None:
    session = uow.session
    try:
        async with session.begin_nested():
            if await webhooks.find_webhook(session, batch.owner_id) is None:
                return
            course = await courses.get_course(session, batch.course_id)
            data = payload | {
                "eventId": seq,
                "course": {"id": batch.course_id, "title": course.title if course else batch.course_id},
                "pagePath": f"/faculty/generate/batch/{batch.id}",  # the deliverer makes it `pageUrl`
            }
            await webhooks.enqueue(
                session, user_id=batch.owner_id, batch_id=batch.id, event=name, event_seq=seq, data=data, now=now
            )
    except Exception:
        logger.exception("could not queue the webhook of %s for batch %s; the batch goes on without it", name, batch.id)
