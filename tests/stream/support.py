"""Reading a batch's progress stream the way a client does (httpx + httpx-sse), and what to compare it with.

The key sets are the brief's TypeScript interfaces, to the letter; `item.failed` may carry `errorKind` and
`batch.progress` `cancelledItems` and `retryingItems` as well (the README's stream section), nothing else.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse

from tests.conftest import batch_body

ITEM_STARTED = {"itemId", "itemIndex", "startedAt"}
ITEM_COMPLETED = {"itemId", "itemIndex", "generationId", "durationMs", "completedAt"}
ITEM_FAILED = {"itemId", "itemIndex", "errorMessage", "retryCount", "willRetry", "errorKind"}
SNAPSHOT = {
    "batchId",
    "totalItems",
    "completedItems",
    "failedItems",
    "inProgressItems",
    "pendingItems",
    "cancelledItems",  # beyond the brief: what a cancel stopped (the README's stream section)
    "retryingItems",  # beyond the brief: the pending items that will be tried again after a failed attempt
    "percentage",
    "estimatedTimeRemainingMs",
    "throughputRate",
    # Issue 13, beyond the brief: the ETA's range, and the batch's usage so far.
    "estimatedTimeRemainingRangeMs",
    "promptTokens",
    "completionTokens",
    "cost",
    "currency",
}
COMPLETE = {"batchId", "status", "totalItems", "completedItems", "failedItems", "totalDurationMs"}
# What the stream sends besides the logged events: derived snapshots and keep-alives.
UNLOGGED = {"batch.progress", "heartbeat"}

Logged = tuple[int, str, dict[str, Any]]


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The contract's error: JSON `{"error": {"code", "message"}}` with a message a person can read."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def progress_url(batch_id: str) -> str:
    return f"/api/v1/generation/batch/{batch_id}/progress"


def parse_time(text: str) -> datetime:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text), text
    return datetime.fromisoformat(text)


@dataclass
class Received:
    """One connection: its status and headers, and the events it delivered (in order)."""

    status: int
    headers: httpx.Headers
    events: list[ServerSentEvent] = field(default_factory=list)
    body: bytes = b""

    @property
    def last_id(self) -> int | None:
        ids = [int(e.id) for e in self.events if e.id]
        return ids[-1] if ids else None

    def named(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(e.data) for e in self.events if e.event == name]

    @property
    def logged(self) -> list[Logged]:
        return logged(self.events)

    @property
    def complete(self) -> bool:
        return any(e.event == "batch.complete" for e in self.events)


def logged(events: list[ServerSentEvent]) -> list[Logged]:
    """The events that come from the event log, as (seq, name, payload)."""
    return [(int(e.id), e.event, json.loads(e.data)) for e in events if e.event not in UNLOGGED]


def parse_sse(text: str) -> list[ServerSentEvent]:
    """Events from raw stream text, as EventSource reads them (an event without an id keeps the last one)."""
    events: list[ServerSentEvent] = []
    last_id, name, data = "", "", list[str]()
    for line in text.split("\n"):
        if not line:
            if name or data:
                events.append(ServerSentEvent(event=name or "message", data="\n".join(data), id=last_id))
            name, data = "", []
            continue
        key, _, value = line.partition(": ")
        if key == "id":
            last_id = value
        elif key == "event":
            name = value
        elif key == "data":
            data.append(value)
    return events


def stop_at_complete(event: ServerSentEvent) -> bool:
    return event.event == "batch.complete"


def stop_after(count: int) -> Callable[[ServerSentEvent], bool]:
    """Stops reading after `count` events (of any kind), or at `batch.complete`."""
    seen = 0

    def stop(event: ServerSentEvent) -> bool:
        nonlocal seen
        seen += 1
        return seen >= count or stop_at_complete(event)

    return stop


async def read_stream(
    http: httpx.AsyncClient,
    batch_id: str,
    *,
    query_id: int | str | None = None,
    header_id: int | str | None = None,
    stop: Callable[[ServerSentEvent], bool] = stop_at_complete,
    on_event: Callable[[ServerSentEvent], Awaitable[None]] | None = None,
    timeout: float = 60,
) -> Received:
    """Opens the stream, reads events (handing each to `on_event`) until `stop(event)` holds or the server
    ends it, then closes it."""
    params = {} if query_id is None else {"lastEventId": str(query_id)}
    headers = {} if header_id is None else {"Last-Event-ID": str(header_id)}
    async with asyncio.timeout(timeout):
        async with aconnect_sse(http, "GET", progress_url(batch_id), params=params, headers=headers) as source:
            received = Received(source.response.status_code, source.response.headers)
            if source.response.status_code != 200:
                received.body = await source.response.aread()
                return received
            async for event in source.aiter_sse():
                received.events.append(event)
                if on_event is not None:
                    await on_event(event)
                if stop(event):
                    break
    return received


async def create_batch(http: httpx.AsyncClient, count: int, **kwargs: Any) -> dict[str, Any]:
    response = await http.post("/api/v1/generation/batch", json=batch_body(count, **kwargs))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def control(http: httpx.AsyncClient, batch_id: str, action: str) -> httpx.Response:
    return await http.post(f"/api/v1/generation/batch/{batch_id}/{action}")


async def metric(http: httpx.AsyncClient, name: str, labels: str = "") -> float:
    """One sample of the server's /metrics, e.g. `metric(http, "livebatch_stream_cutoffs_total",
    'reason="buffer_full"')`."""
    text = (await http.get("/metrics")).text
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == wanted:
            return float(value)
    raise AssertionError(f"{wanted} not in /metrics")


async def wait_for_metric(
    http: httpx.AsyncClient, name: str, predicate: Callable[[float], bool], *, labels: str = "", timeout: float = 30
) -> float:
    """Polls /metrics until the sample satisfies `predicate` (a condition with a deadline)."""
    value = await metric(http, name, labels)
    async with asyncio.timeout(timeout):
        while not predicate(value):
            await asyncio.sleep(0.05)
            value = await metric(http, name, labels)
    return value


def expected_counts(log: list[Logged], upto: int, total: int) -> dict[str, int]:
    """The snapshot counts implied by the log's events up to seq `upto` (no retry or cancel)."""
    started = completed = failed = attempts_failed = 0
    retrying: set[int] = set()  # items whose last attempt failed and that will be tried again
    over = False
    for seq, name, payload in log:
        if seq > upto:
            break
        if name == "item.started":
            started += 1
            retrying.discard(payload["itemIndex"])
        elif name == "item.completed":
            completed += 1
        elif name == "item.failed":
            attempts_failed += 1
            failed += 0 if payload["willRetry"] else 1
            if payload["willRetry"]:
                retrying.add(payload["itemIndex"])
        elif name == "batch.complete":
            over = True
    in_progress = started - completed - attempts_failed
    return {
        "totalItems": total,
        "completedItems": completed,
        "failedItems": failed,
        "inProgressItems": in_progress,
        "pendingItems": total - completed - failed - in_progress,
        "cancelledItems": 0,
        "retryingItems": 0 if over else len(retrying),
        "percentage": completed * 100 // total,
    }
