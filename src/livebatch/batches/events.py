"""The SSE payloads, one class per event name; snake_case here, camelCase on the wire (the brief's names).

`batch.paused`, `batch.resumed` and `batch.retried` go beyond the brief: the brief's `batch.progress`
carries no status, and the page must show a pause or a retry as it happens. So do `cancelledItems` and
`retryingItems` in `batch.progress`, and `errorKind` in `item.failed`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

ErrorKind = Literal["validation", "timeout", "rate_limited", "provider_error", "auth", "internal"]


class WireModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


class BatchEvent(WireModel):
    name: ClassVar[str]


class ItemStarted(BatchEvent):
    """`item.started`: an attempt at one item began."""

    name: ClassVar[str] = "item.started"
    item_id: str
    item_index: int
    started_at: str


class ItemCompleted(BatchEvent):
    """`item.completed`: the item was generated, validated and stored."""

    name: ClassVar[str] = "item.completed"
    item_id: str
    item_index: int
    generation_id: str
    duration_ms: int
    completed_at: str


class ItemFailed(BatchEvent):
    """`item.failed`: one attempt failed; `willRetry` says whether the item goes back to pending."""

    name: ClassVar[str] = "item.failed"
    item_id: str
    item_index: int
    error_message: str
    retry_count: int
    will_retry: bool
    error_kind: ErrorKind


class BatchComplete(BatchEvent):
    """`batch.complete`: the batch reached a final status; the stream ends after it."""

    name: ClassVar[str] = "batch.complete"
    batch_id: str
    status: str
    total_items: int
    completed_items: int
    failed_items: int
    total_duration_ms: int


class BatchPaused(BatchEvent):
    name: ClassVar[str] = "batch.paused"
    batch_id: str
    paused_at: str


class BatchResumed(BatchEvent):
    name: ClassVar[str] = "batch.resumed"
    batch_id: str
    resumed_at: str


class BatchRetried(BatchEvent):
    """`batch.retried`: failed (and never attempted) items were queued again; the batch runs again."""

    name: ClassVar[str] = "batch.retried"
    batch_id: str
    retried_items: int
    retried_at: str


class BatchProgressSnapshot(WireModel):
    """`batch.progress`: derived, never logged; sent on connect, coalesced, and before `batch.complete`.

    `cancelledItems` goes beyond the brief, whose four counts have no place for the items a cancel
    stopped: completed + failed + in progress + pending + cancelled = total in every snapshot. So does
    `retryingItems`: the pending items whose last attempt failed and that will be tried again (a part of
    `pendingItems`, in no sum), so that a page can say "2 retrying" while `failedItems` is still 0."""

    name: ClassVar[str] = "batch.progress"
    batch_id: str
    total_items: int
    completed_items: int
    failed_items: int
    in_progress_items: int
    pending_items: int
    cancelled_items: int
    retrying_items: int = 0
    percentage: int
    estimated_time_remaining_ms: int
    throughput_rate: float


class Heartbeat(WireModel):
    name: ClassVar[str] = "heartbeat"
    timestamp: str
