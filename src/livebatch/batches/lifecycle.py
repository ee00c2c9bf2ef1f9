"""The steps every change of a batch is made of, shared by the faculty's commands (service.py) and the
workers' results (work.py): append the event, keep the dispatch window full, count an attempt's usage,
pause the batch (by hand, or by one of its guards), end the batch.

Each step changes the batch row and its counters in the caller's unit of work, under the batch's lock;
the snapshot that travels with an event is read from those counters, so it is exactly as of that event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from livebatch.batches import guards, item_repository, notify, progress
from livebatch.batches.accounting import Charge, Totals
from livebatch.batches.events import (
    BatchComplete,
    BatchEvent,
    BatchPaused,
    BatchProgressSnapshot,
    ErrorKind,
    ItemFailed,
    PauseReason,
)
from livebatch.batches.models import Batch
from livebatch.batches.retry import RetryPolicy
from livebatch.batches.status import WORKING, BatchStatus
from livebatch.clock import iso
from livebatch.events import log
from livebatch.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt at one item: the attempt number fences its result (only that attempt may record it)."""

    item_id: UUID
    item_index: int
    number: int


# The longest error message kept: it is stored on the item (and the batch, when it fails it) and sent in
# `item.failed` to every viewer, while a provider may put anything in it (a 2 MB refusal was seen).
ERROR_MESSAGE_CHARS = 2000


def bounded_message(text: str, limit: int = ERROR_MESSAGE_CHARS) -> str:
    """`text`, or its start with a marker that says how long it was, in at most `limit` characters."""
    if len(text) <= limit:
        return text
    marker = f"… [cut: {len(text):,} characters in all]"
    return text[: limit - len(marker)] + marker


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an attempt failed; a `fatal` one (a rejected API key) fails the whole batch at once. `charge`:
    what the attempt used, when the provider answered at all (a reply that broke a rule cost tokens too).
    `message` is bounded here, the one way into the item's error, the batch's and `item.failed`."""

    kind: ErrorKind
    message: str
    fatal: bool = False
    retry_after_ms: int | None = None
    charge: Charge | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", bounded_message(self.message))


def totals_of(batch: Batch) -> Totals:
    return Totals(
        prompt_tokens=batch.prompt_tokens,
        completion_tokens=batch.completion_tokens,
        cost_nanos=batch.cost_nanos,
        unpriced_attempts=batch.unpriced_attempts,
        currency=batch.currency,
    )


def snapshot_of(batch: Batch) -> BatchProgressSnapshot:
    return progress.snapshot(
        str(batch.id),
        total=batch.total_items,
        completed=batch.completed_items,
        failed=batch.failed_items,
        in_progress=batch.in_progress_items,
        pending=batch.pending_items,
        cancelled=batch.cancelled_items,
        retrying=batch.retrying_items,
        window=batch.completion_window,
        concurrency=batch.concurrency,
        item_prior_ms=batch.item_prior_ms,
        finished=batch.status.is_terminal,
        usage=totals_of(batch),
    )


async def append(uow: UnitOfWork, batch: Batch, event: BatchEvent, *, now: datetime) -> None:
    """Appends `event` with the batch's next seq, to be published with the snapshot as of it; an event the
    owner's webhook hears of (notify.py) is queued in its outbox in the same transaction."""
    batch.last_seq += 1
    logged = await log.append(uow.session, batch.id, batch.last_seq, event.name, event.to_json(), at=now)
    uow.announce(str(batch.id), logged, state=snapshot_of(batch).to_json())
    if event.name in notify.EVENTS:
        await notify.event_appended(uow, batch, event, seq=batch.last_seq, now=now)


async def dispatch(uow: UnitOfWork, batch: Batch, count: int, *, now: datetime) -> list[UUID]:
    """Dispatches up to `count` more items of the batch, queued for a worker once the unit commits."""
    ids = await item_repository.mark_dispatched(uow.session, batch.id, count, now=now)
    uow.dispatch(ids)
    return ids


def stop_clock(batch: Batch, now: datetime) -> None:
    batch.active_ms = progress.active_clock_ms(batch.active_ms, batch.running_since, now)
    batch.running_since = None


def add_charge(batch: Batch, charge: Charge | None) -> None:
    """Adds what one attempt used to the batch's counters."""
    if charge is None:
        return
    batch.prompt_tokens += charge.prompt_tokens
    batch.completion_tokens += charge.completion_tokens
    if charge.cost_nanos is None:
        batch.unpriced_attempts += 1
    else:
        batch.cost_nanos += charge.cost_nanos


async def add_discarded(uow: UnitOfWork, batch: Batch, attempt: Attempt, charge: Charge | None) -> None:
    """An attempt whose outcome no longer counts (its batch was cancelled or failed meanwhile) still spent
    its tokens: they go to its item and its batch, once."""
    if charge is not None and await item_repository.add_usage_of_discarded(
        uow.session, attempt.item_id, attempt.number, charge
    ):
        add_charge(batch, charge)


def count_attempt(batch: Batch, charge: Charge | None, *, failed: bool) -> None:
    """An attempt's outcome was recorded: its usage, and its outcome in the error-rate guard's window."""
    add_charge(batch, charge)
    if guards.error_rate_guard_on(batch.config):
        batch.recent_outcomes = guards.record_outcome(batch.recent_outcomes, failed=failed)


def tripped(batch: Batch) -> PauseReason | None:
    """The guard that must pause the batch now, if any (guards.py)."""
    return guards.trip(
        guards.Budget.of(batch.config),
        tokens=batch.prompt_tokens + batch.completion_tokens,
        cost_nanos=batch.cost_nanos,
        window=batch.recent_outcomes,
        error_rate_guard=guards.error_rate_guard_on(batch.config),
    )


def rearm(batch: Batch) -> None:
    """The batch runs again by someone's decision: its error-rate guard starts from an empty window."""
    batch.recent_outcomes = ""
    batch.pause_reason = None


async def pause(uow: UnitOfWork, batch: Batch, reason: PauseReason, *, now: datetime) -> None:
    """No new item starts; those in flight finish and are recorded. `reason`: who or what paused it."""
    stop_clock(batch, now)
    batch.status = BatchStatus.paused
    batch.pause_reason = reason
    await append(uow, batch, BatchPaused(batch_id=str(batch.id), paused_at=iso(now), reason=reason), now=now)


async def finish(uow: UnitOfWork, batch: Batch, status: BatchStatus, *, now: datetime) -> None:
    stop_clock(batch, now)
    batch.status = status
    batch.completed_at = now
    started = batch.started_at or batch.created_at
    event = BatchComplete(
        batch_id=str(batch.id),
        status=status.value,
        total_items=batch.total_items,
        completed_items=batch.completed_items,
        failed_items=batch.failed_items,
        total_duration_ms=max(0, round((now - started).total_seconds() * 1000)),
    )
    await append(uow, batch, event, now=now)


async def after_item(uow: UnitOfWork, batch: Batch, *, now: datetime) -> None:
    """After an item finished an attempt: end the batch if nothing is left; else pause it if a guard trips
    (in-flight attempts finish and are recorded; nothing new starts); else keep the window full."""
    if batch.status.is_terminal:
        return
    if batch.pending_items == 0 and batch.in_progress_items == 0:
        if batch.failed_items == 0:
            status = BatchStatus.completed
        elif batch.completed_items == 0:
            status = BatchStatus.failed
            batch.error_message = batch.error_message or f"All {batch.failed_items} items failed."
        else:
            status = BatchStatus.completed_with_errors
        await finish(uow, batch, status, now=now)
    elif batch.status in WORKING:
        reason = tripped(batch)
        if reason is not None:
            await pause(uow, batch, reason, now=now)
        else:
            await dispatch(uow, batch, 1, now=now)


async def fail_attempt(
    uow: UnitOfWork,
    batch: Batch,
    attempt: Attempt,
    failure: Failure,
    *,
    policy: RetryPolicy,
    now: datetime,
    expired_before: datetime | None = None,
) -> bool:
    """Records a failed attempt: back to pending while attempts remain, else failed; a fatal failure fails
    the batch. False when this attempt no longer holds the item (with `expired_before`: when its lease
    had not expired by then)."""
    will_retry = not failure.fatal and policy.will_retry(attempt.number) and not batch.status.is_terminal
    retry_at = None
    if will_retry:
        retry_at = now + timedelta(milliseconds=policy.delay_ms(attempt.number, retry_after_ms=failure.retry_after_ms))
    recorded = await item_repository.record_failure(
        uow.session,
        attempt.item_id,
        attempt.number,
        kind=failure.kind,
        message=failure.message,
        retry_at=retry_at,
        now=now,
        lease_expired_before=expired_before,
        charge=failure.charge,
    )
    if not recorded:
        await add_discarded(uow, batch, attempt, failure.charge)
        return False
    batch.in_progress_items -= 1
    if will_retry:
        batch.retrying_items += 1
    else:
        batch.failed_items += 1
    count_attempt(batch, failure.charge, failed=True)
    await append(uow, batch, _failed_event(attempt, failure.kind, failure.message, will_retry), now=now)
    if failure.fatal and not batch.status.is_terminal:
        await _fail_batch(uow, batch, failure, now=now)
    else:
        await after_item(uow, batch, now=now)
    return True


async def _fail_batch(uow: UnitOfWork, batch: Batch, failure: Failure, *, now: datetime) -> None:
    """The provider cannot work at all: fail the attempts in flight, keep pending items for a retry."""
    batch.error_message = failure.message
    stopped = f"Batch stopped: {failure.message}"
    for item in await item_repository.in_progress_items(uow.session, batch.id):
        await item_repository.record_failure(
            uow.session, item.id, item.attempts, kind=failure.kind, message=stopped, retry_at=None, now=now
        )
        batch.in_progress_items -= 1
        batch.failed_items += 1
        attempt = Attempt(item.id, item.idx, item.attempts)
        await append(uow, batch, _failed_event(attempt, failure.kind, stopped, False), now=now)
    await item_repository.clear_dispatches(uow.session, batch.id)
    await finish(uow, batch, BatchStatus.failed, now=now)


def _failed_event(attempt: Attempt, kind: ErrorKind, message: str, will_retry: bool) -> ItemFailed:
    return ItemFailed(
        item_id=str(attempt.item_id),
        item_index=attempt.item_index,
        error_message=message,
        retry_count=attempt.number,
        will_retry=will_retry,
        error_kind=kind,
    )
