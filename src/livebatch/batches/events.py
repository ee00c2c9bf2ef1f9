"""The SSE payloads, one class per event name; snake_case here, camelCase on the wire (the brief's names).

`batch.paused`, `batch.resumed` and `batch.retried` go beyond the brief: the brief's `batch.progress`
carries no status, and the page must show a pause or a retry as it happens. So do `cancelledItems` and
`retryingItems` in `batch.progress`, and `errorKind` in `item.failed`. Issue 13 adds, and a client that
ignores it loses nothing: `reason` in `batch.paused` (who or what paused it), the ETA range and the batch's
tokens and cost in `batch.progress`, and `batch.reset`, which is never logged: a stream sends it when the
client's `Last-Event-ID` names an event that was pruned from the log.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

# `truncated`: the model reached the token cap before the item was complete (OpenAI's `finish_reason: length`).
ErrorKind = Literal["validation", "truncated", "timeout", "rate_limited", "provider_error", "auth", "internal"]


# The characters `str.splitlines` ends a line on that JSON leaves as they are (it escapes the others, the
# control characters below U+0020): an SSE or JSON Lines reader that splits lines like it (httpx does, so
# `livebatch watch`) would cut a payload in two, and an SSE `data:` field split there is no longer JSON.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def one_line(json_text: str) -> str:
    """JSON text with no character any line reader breaks on (the same value, escaped)."""
    return json_text.translate(_LINE_BREAKS)


class WireModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def to_json(self) -> str:
        """Every payload of the stream and the export is encoded here, on one line whatever its text holds."""
        return one_line(self.model_dump_json(by_alias=True, exclude_none=True))


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


PauseReason = Literal["user", "budget_reached", "error_rate"]


class BatchPaused(BatchEvent):
    """`batch.paused`: no new item starts; `reason` says why: `user` (someone pressed Pause), or one of
    the batch's guards, `budget_reached` or `error_rate` (batches/guards.py). Logged before issue 13
    without a reason: those were all `user`."""

    name: ClassVar[str] = "batch.paused"
    batch_id: str
    paused_at: str
    reason: PauseReason = "user"


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


# The events written to the log, the only ones the fan-out carries (the rest are a stream's own).
LOGGED_EVENT_NAMES = frozenset(
    cls.name for cls in (ItemStarted, ItemCompleted, ItemFailed, BatchComplete, BatchPaused, BatchResumed, BatchRetried)
)


class BatchReset(BatchEvent):
    """`batch.reset`: the events after the client's `Last-Event-ID` are no longer in the log (an operator
    pruned it, `livebatch prune`), so they cannot be replayed. Not logged: its id is where the stream goes
    on from (`lastEventId`), and a fresh `batch.progress` follows. A client should drop what it holds of
    the batch and read it again (`GET /api/v1/generation/batch/{batchId}`)."""

    name: ClassVar[str] = "batch.reset"
    batch_id: str
    last_event_id: int
    pruned_through: int
    reason: Literal["pruned"] = "pruned"


class BatchProgressSnapshot(WireModel):
    """`batch.progress`: derived, never logged; sent on connect, coalesced, and before `batch.complete`.

    `cancelledItems` goes beyond the brief, whose four counts have no place for the items a cancel
    stopped: completed + failed + in progress + pending + cancelled = total in every snapshot. So does
    `retryingItems`: the pending items whose last attempt failed and that will be tried again (a part of
    `pendingItems`, in no sum), so that a page can say "2 retrying" while `failedItems` is still 0. So do the
    fields after `throughputRate` (issue 13): the ETA's 10th-90th percentile range (null before the first
    completion), and the tokens and cost of every attempt recorded so far, failed ones included (`cost` is
    null while any attempt's model has no price: unknown, never 0). They are sent as null, never left out."""

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
    estimated_time_remaining_range_ms: list[int] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    currency: str = "USD"

    def to_json(self) -> str:
        return one_line(self.model_dump_json(by_alias=True))


class Heartbeat(WireModel):
    name: ClassVar[str] = "heartbeat"
    timestamp: str
