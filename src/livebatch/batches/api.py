"""The batch API: parse, authorize by dependency, call one service, own the commit, return."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.responses import Response

from livebatch.auth import FacultyUser
from livebatch.batches import reads, service
from livebatch.batches.events import (
    BatchComplete,
    BatchPaused,
    BatchProgressSnapshot,
    BatchReset,
    BatchResumed,
    BatchRetried,
    Heartbeat,
    ItemCompleted,
    ItemFailed,
    ItemStarted,
)
from livebatch.batches.models import Batch
from livebatch.batches.schemas import (
    MAX_ITEM_INDEX,
    BatchCreate,
    BatchDetail,
    BatchPage,
    BatchRead,
    BudgetSpec,
    GeneratedItemPage,
    RetryFilter,
)
from livebatch.db import Database
from livebatch.deps import ClockDep, DatabaseDep, LimitsDep, ReadSessionDep, StreamsDep, UnitOfWorkDep
from livebatch.errors import BadRequest, error_responses
from livebatch.uow import UnitOfWork

router = APIRouter(prefix="/api/v1/generation", tags=["generation"])

# The errors each kind of endpoint may answer, documented with their shape (every answer of the API is in
# its OpenAPI schema: tests/security/test_schema.py checks them all).
READ = error_responses(401, 403, 404, 422)
CONTROL = error_responses(401, 403, 404, 409, 422)
STREAMED = (
    BatchProgressSnapshot,
    ItemStarted,
    ItemCompleted,
    ItemFailed,
    BatchComplete,
    BatchPaused,
    BatchResumed,
    BatchRetried,
    BatchReset,
    Heartbeat,
)
# One event of the stream, as schemathesis and the OpenAPI 3.2 `itemSchema` read it; the payloads of `data`
# are the brief's interfaces (batches/events.py).
SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"enum": [event.name for event in STREAMED]},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string", "pattern": r"^[0-9]+$"},
        "retry": {"type": "integer"},
    },
    "required": ["event", "data"],
}
# The id of an event of this batch (checked by `stream.parse_last_event_id`, with a clearer message than a
# pattern's; an id beyond the batch's log is a 422 too).
EVENT_ID = {"pattern": r"^[0-9]{0,18}$", "description": "The sequence number of the last event received (empty: none)"}


@router.post(
    "/batch", status_code=201, response_model=BatchRead, responses=error_responses(400, 401, 403, 413, 422, 429)
)
async def create_batch(
    spec: BatchCreate, uow: UnitOfWorkDep, user: FacultyUser, limits: LimitsDep, now: ClockDep
) -> BatchRead:
    batch = await service.create_batch(uow, spec, owner=user, limits=limits, now=now())
    return await _committed(uow, batch)  # the first items are queued only after the commit


@router.get("/batches", response_model=BatchPage, responses=error_responses(401, 403, 422))
async def list_batches(
    session: ReadSessionDep,
    user: FacultyUser,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> BatchPage:
    page, last = await reads.batches_page(session, user, before=_decode_cursor(cursor), limit=limit)
    return BatchPage(batches=page, next_cursor=_encode_cursor(last) if last is not None else None)


@router.get("/batch/{batch_id}", response_model=BatchDetail, responses=READ)
async def read_batch(
    batch_id: str,
    session: ReadSessionDep,
    user: FacultyUser,
    feed: Annotated[int, Query(ge=0, le=10_000, description="Most feed rows to return")] = 1000,
) -> BatchDetail:
    return await reads.batch_detail(session, service.parse_batch_id(batch_id), user, feed=feed)


@router.get(
    "/batch/{batch_id}/progress",
    responses={
        **READ,
        **error_responses(429),
        200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}, "description": "The batch's events"},
        204: {"description": "The batch is over and its last event was seen"},
    },
)
async def stream_progress(
    request: Request,
    batch_id: str,
    user: FacultyUser,
    streams: StreamsDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID", json_schema_extra=EVENT_ID)] = None,
    last_event_id: Annotated[str | None, Query(alias="lastEventId", json_schema_extra=EVENT_ID)] = None,
) -> Response:
    server = request.scope.get("server")
    where = f"{server[0]}:{server[1]}" if server else None
    return await streams.open(batch_id, user, header_id=last_event_id_header, query_id=last_event_id, server=where)


@router.post("/batch/{batch_id}/pause", response_model=BatchRead, responses=CONTROL)
async def pause_batch(batch_id: str, uow: UnitOfWorkDep, user: FacultyUser, now: ClockDep) -> BatchRead:
    batch = await service.pause_batch(uow, service.parse_batch_id(batch_id), user=user, now=now())
    return await _committed(uow, batch)


@router.post("/batch/{batch_id}/resume", response_model=BatchRead, responses=CONTROL)
async def resume_batch(batch_id: str, uow: UnitOfWorkDep, user: FacultyUser, now: ClockDep) -> BatchRead:
    batch = await service.resume_batch(uow, service.parse_batch_id(batch_id), user=user, now=now())
    return await _committed(uow, batch)


@router.post("/batch/{batch_id}/cancel", response_model=BatchRead, responses=CONTROL)
async def cancel_batch(batch_id: str, uow: UnitOfWorkDep, user: FacultyUser, now: ClockDep) -> BatchRead:
    batch = await service.cancel_batch(uow, service.parse_batch_id(batch_id), user=user, now=now())
    return await _committed(uow, batch)


@router.post(
    "/batch/{batch_id}/retry-failed",
    response_model=BatchRead,
    responses=CONTROL | error_responses(400, 413, 429),
)
async def retry_failed(
    batch_id: str,
    uow: UnitOfWorkDep,
    user: FacultyUser,
    limits: LimitsDep,
    now: ClockDep,
    only: Annotated[
        RetryFilter | None,
        Body(description="Retry only these failed items (by `errorKinds`, by `failureGroups` keys); none: all"),
    ] = None,
) -> BatchRead:
    batch_uuid = service.parse_batch_id(batch_id)
    batch = await service.retry_failed(uow, batch_uuid, user=user, limits=limits, now=now(), only=only)
    return await _committed(uow, batch)


@router.put(
    "/batch/{batch_id}/budget", response_model=BatchRead, responses=error_responses(400, 401, 403, 404, 413, 422)
)
async def set_budget(
    batch_id: str, budget: BudgetSpec, uow: UnitOfWorkDep, user: FacultyUser, limits: LimitsDep, now: ClockDep
) -> BatchRead:
    """Sets what the batch may spend before it pauses itself (`{"cost": 5.0}`, `{"tokens": 200000}`, both, or
    neither to remove the cap). A batch paused because its budget was spent stays paused: resume it after."""
    batch = await service.set_budget(uow, service.parse_batch_id(batch_id), budget, user=user, limits=limits, now=now())
    return await _committed(uow, batch)


async def _committed(uow: UnitOfWork, batch: Batch) -> BatchRead:
    """The batch as the command left it, read in its transaction; then the commit (and what it announces)."""
    read = await reads.batch_read(uow.session, batch)
    await uow.commit()
    return read


@router.get("/batch/{batch_id}/items", response_model=GeneratedItemPage, responses=READ)
async def list_generated_items(
    batch_id: str,
    session: ReadSessionDep,
    user: FacultyUser,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[int, Query(ge=-1, le=MAX_ITEM_INDEX, description="Item index the previous page ended at")] = -1,
) -> GeneratedItemPage:
    batch = await reads.get_owned_batch(session, service.parse_batch_id(batch_id), user)
    return await reads.generated_page(session, batch, after_index=cursor, limit=limit)


@router.get(
    "/batch/{batch_id}/items.jsonl",
    responses={
        **READ,
        200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}, "description": "One item a line"},
    },
)
async def export_generated_items(
    batch_id: str, session: ReadSessionDep, user: FacultyUser, db: DatabaseDep
) -> Response:
    batch = await reads.get_owned_batch(session, service.parse_batch_id(batch_id), user)
    return StreamingResponse(
        _jsonl(db, batch),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="batch-{batch.id}.jsonl"'},
    )


async def _jsonl(db: Database, batch: Batch) -> AsyncIterator[bytes]:
    after = -1
    while True:
        async with db.read_session() as session:
            page = await reads.generated_page(session, batch, after_index=after, limit=500)
        if not page.items:
            return
        yield b"".join(item.to_json().encode() + b"\n" for item in page.items)
        after = page.items[-1].item_index


def _encode_cursor(batch: Batch) -> str:
    raw = json.dumps([batch.created_at.isoformat(), str(batch.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[datetime, UUID] | None:
    if not cursor:
        return None
    try:
        created, batch_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        at = datetime.fromisoformat(created)
        # The API gives out aware times; a naive one, or one that leaves the calendar once in UTC, would
        # fail in the database as a 500.
        if at.tzinfo is None:
            raise ValueError("naive")
        return at.astimezone(UTC), UUID(batch_id)
    except (ValueError, TypeError, OverflowError, binascii.Error):
        raise BadRequest("The cursor is not one this API gave out.") from None
