"""The batch state machine. Services check rules, change rows, append events and flush; never commit.

    batch:  queued ─▶ running ⇄ paused ─▶ completed | completed_with_errors | failed | cancelled
            (completed_with_errors | failed) ─retry-failed─▶ running
    item:   pending ─claim─▶ in_progress ─▶ completed
                                         ─▶ pending  (failed attempt, retries left: `item.failed`, willRetry)
                                         ─▶ failed   (no attempts left, or the provider is unusable)
            pending | in_progress ─cancel─▶ cancelled

Work is dispatched in a window: at most `concurrency` items of a batch are claimed or on their way to a
worker, and each finished item dispatches the next one. That bounds a batch's concurrency across every
worker, and tells the sweeper which queued work may have been lost. The items to dispatch are left in
`session.info` for the boundary to queue after it commits, like the events for the bus.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.batches import progress, repository
from livebatch.batches.events import (
    BatchComplete,
    BatchEvent,
    BatchPaused,
    BatchProgressSnapshot,
    BatchResumed,
    BatchRetried,
    ErrorKind,
    ItemCompleted,
    ItemFailed,
    ItemStarted,
)
from livebatch.batches.models import Batch, BatchStatus, ItemStatus
from livebatch.batches.retry import RetryPolicy
from livebatch.batches.schemas import BatchCreate, DifficultyDistribution
from livebatch.clock import iso
from livebatch.courses.models import Course
from livebatch.errors import BadRequest, Conflict, Forbidden, NotFound, TooManyRequests
from livebatch.events import log
from livebatch.generation.items import Question
from livebatch.users.models import User

_DISPATCH = "livebatch.dispatch"


class BatchNotFound(NotFound):
    def __init__(self, batch_id: object) -> None:
        super().__init__(f"Batch {batch_id} does not exist.")


class NotBatchOwner(Forbidden):
    def __init__(self) -> None:
        super().__init__("This batch belongs to someone else.")


class InvalidTransition(Conflict):
    code = "INVALID_STATE"


class TooManyActiveBatches(TooManyRequests):
    code = "TOO_MANY_BATCHES"


@dataclass(frozen=True, slots=True)
class Limits:
    max_target_count: int = 1000
    max_active_batches: int = 5
    concurrency: int = 4


@dataclass(frozen=True, slots=True)
class Claim:
    """An attempt a worker now holds: generate, then `complete_item` or `fail_item` with it."""

    item_id: UUID
    batch_id: UUID
    item_index: int
    attempt: int
    difficulty: str
    course_title: str
    question_type: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class NotYet:
    """The item is waiting out a retry delay until `at`."""

    at: datetime


# --- reading -----------------------------------------------------------------------------------------


def parse_batch_id(raw: str) -> UUID:
    """A batch id from a URL; an id that is not well-formed names no batch, hence 404."""
    try:
        return UUID(raw)
    except ValueError:
        raise BatchNotFound(raw) from None


async def get_owned_batch(session: AsyncSession, batch_id: UUID, user: User) -> Batch:
    batch = await repository.get_batch(session, batch_id)
    if batch is None:
        raise BatchNotFound(batch_id)
    if batch.owner_id != user.id:
        raise NotBatchOwner()
    return batch


def snapshot_of(batch: Batch) -> BatchProgressSnapshot:
    return progress.snapshot(
        str(batch.id),
        total=batch.total_items,
        completed=batch.completed_items,
        failed=batch.failed_items,
        in_progress=batch.in_progress_items,
        pending=batch.pending_items,
        window=batch.completion_window,
    )


def take_dispatched(session: AsyncSession) -> list[UUID]:
    """Items dispatched since the last call, to queue once the transaction has committed."""
    dispatched: list[UUID] = session.info.pop(_DISPATCH, [])
    return dispatched


# --- creating and controlling ------------------------------------------------------------------------


def assign_difficulties(count: int, mix: DifficultyDistribution) -> list[str]:
    """Difficulties for `count` items in the requested proportions (largest remainder), interleaved so
    that any prefix of the batch is close to the mix too."""
    shares = {"easy": mix.easy, "medium": mix.medium, "hard": mix.hard}
    quotas = {d: count * s // 100 for d, s in shares.items()}
    by_remainder = sorted(shares, key=lambda d: (-(count * shares[d] % 100), d))
    for d in by_remainder[: count - sum(quotas.values())]:
        quotas[d] += 1
    placed = dict.fromkeys(quotas, 0)
    order: list[str] = []
    for i in range(1, count + 1):
        # The difficulty furthest behind its quota after i items goes next.
        d = max(quotas, key=lambda d: (quotas[d] * i / count - placed[d], quotas[d]))
        placed[d] += 1
        order.append(d)
    return order


async def create_batch(
    session: AsyncSession, spec: BatchCreate, *, owner: User, limits: Limits, now: datetime
) -> Batch:
    if spec.target_count > limits.max_target_count:
        raise BadRequest(f"targetCount must be at most {limits.max_target_count}, not {spec.target_count}.")
    if await session.get(Course, spec.course_id) is None:
        raise BadRequest(f"Course {spec.course_id!r} does not exist.")
    if await repository.count_active_batches(session, owner.id) >= limits.max_active_batches:
        raise TooManyActiveBatches(
            f"You already have {limits.max_active_batches} batches queued, running or paused; "
            "wait for one to finish or cancel one."
        )
    batch = Batch(
        owner_id=owner.id,
        course_id=spec.course_id,
        config=spec.model_dump(by_alias=True),
        status=BatchStatus.queued.value,
        concurrency=limits.concurrency,
        total_items=spec.target_count,
        completion_window=[0],
        created_at=now,
    )
    session.add(batch)
    await session.flush()
    await repository.insert_items(
        session, batch.id, assign_difficulties(spec.target_count, spec.difficulty_distribution), now=now
    )
    await _dispatch(session, batch, batch.concurrency, now=now)
    return batch


async def pause_batch(session: AsyncSession, batch_id: UUID, *, user: User, now: datetime) -> Batch:
    batch = await _lock_owned(session, batch_id, user)
    if batch.status not in (BatchStatus.queued, BatchStatus.running):
        raise InvalidTransition(f"A {batch.status} batch cannot be paused.")
    _stop_clock(batch, now)
    batch.status = BatchStatus.paused.value
    await _append(session, batch, BatchPaused(batch_id=str(batch.id), paused_at=iso(now)), now=now)
    return batch


async def resume_batch(session: AsyncSession, batch_id: UUID, *, user: User, now: datetime) -> Batch:
    batch = await _lock_owned(session, batch_id, user)
    if batch.status != BatchStatus.paused:
        raise InvalidTransition(f"A {batch.status} batch cannot be resumed; only a paused one.")
    if batch.started_at is not None:
        batch.status = BatchStatus.running.value
        batch.running_since = now
    else:
        batch.status = BatchStatus.queued.value
    await _append(session, batch, BatchResumed(batch_id=str(batch.id), resumed_at=iso(now)), now=now)
    # Work dispatched before the pause was dropped by its workers; dispatch the window afresh.
    await repository.clear_dispatches(session, batch.id)
    await _dispatch(session, batch, batch.concurrency - batch.in_progress_items, now=now)
    return batch


async def cancel_batch(session: AsyncSession, batch_id: UUID, *, user: User, now: datetime) -> Batch:
    batch = await _lock_owned(session, batch_id, user)
    if batch.batch_status.is_terminal:
        raise InvalidTransition(f"A {batch.status} batch cannot be cancelled.")
    # In-flight attempts are cancelled too: their results arrive to an item no longer in progress.
    cancelled = await repository.set_status_where(
        session,
        batch.id,
        (ItemStatus.pending.value, ItemStatus.in_progress.value),
        {"status": ItemStatus.cancelled.value, "lease_expires_at": None, "dispatched_at": None},
    )
    batch.cancelled_items += cancelled
    batch.in_progress_items = 0
    await _finish(session, batch, BatchStatus.cancelled, now=now)
    return batch


async def retry_failed(session: AsyncSession, batch_id: UUID, *, user: User, limits: Limits, now: datetime) -> Batch:
    batch = await _lock_owned(session, batch_id, user)
    if batch.status not in (BatchStatus.completed_with_errors, BatchStatus.failed):
        raise InvalidTransition(f"A {batch.status} batch has no failed items to retry.")
    if await repository.count_active_batches(session, user.id) >= limits.max_active_batches:
        raise TooManyActiveBatches(f"You already have {limits.max_active_batches} active batches.")
    await repository.set_status_where(
        session,
        batch.id,
        (ItemStatus.failed.value,),
        {
            "status": ItemStatus.pending.value,
            "attempts": 0,
            "next_attempt_at": now,
            "dispatched_at": None,
            "last_error": None,
            "last_error_kind": None,
            "will_retry": False,
        },
    )
    retried = batch.failed_items + batch.pending_items
    batch.failed_items = 0
    batch.status = BatchStatus.running.value
    batch.running_since = now
    batch.completed_at = None
    batch.error_message = None
    await _append(
        session,
        batch,
        BatchRetried(batch_id=str(batch.id), retried_items=retried, retried_at=iso(now)),
        now=now,
    )
    await repository.clear_dispatches(session, batch.id)
    await _dispatch(session, batch, batch.concurrency, now=now)
    return batch


# --- working on items ----------------------------------------------------------------------------------


async def claim_item(session: AsyncSession, item_id: UUID, *, now: datetime, lease: timedelta) -> Claim | NotYet | None:
    """Starts an attempt at the item; None when there is nothing to do (already taken, batch paused or over)."""
    found = await repository.get_item_and_course_title(session, item_id)
    if found is None:
        return None
    item, course_title = found
    if item.status != ItemStatus.pending or item.dispatched_at is None:
        return None
    batch = await repository.lock_batch(session, item.batch_id)
    if batch is None or batch.status not in (BatchStatus.queued, BatchStatus.running):
        return None
    if item.next_attempt_at > now:
        return NotYet(item.next_attempt_at)
    attempt = await repository.claim_item(session, item_id, now=now, lease=lease)
    if attempt is None:
        return None
    if batch.status == BatchStatus.queued:
        batch.status = BatchStatus.running.value
        batch.running_since = now
        batch.started_at = batch.started_at or now
    batch.in_progress_items += 1
    await _append(session, batch, ItemStarted(item_id=str(item_id), item_index=item.idx, started_at=iso(now)), now=now)
    return Claim(
        item_id=item_id,
        batch_id=batch.id,
        item_index=item.idx,
        attempt=attempt,
        difficulty=item.difficulty,
        course_title=course_title,
        question_type=str(batch.config.get("questionType", "single-best-answer")),
        started_at=now,
    )


async def complete_item(session: AsyncSession, claim: Claim, question: Question, *, now: datetime) -> bool:
    """Records the generated item; False when this attempt no longer holds the item (result discarded)."""
    batch = await repository.lock_batch(session, claim.batch_id)
    if batch is None:
        return False
    generation_id = uuid4()
    duration_ms = max(0, round((now - claim.started_at).total_seconds() * 1000))
    recorded = await repository.finish_attempt(
        session,
        claim.item_id,
        claim.attempt,
        values={
            "status": ItemStatus.completed.value,
            "finished_at": now,
            "duration_ms": duration_ms,
            "generation_id": generation_id,
            "will_retry": False,
        },
    )
    if not recorded:
        return False
    await repository.insert_generated(
        session,
        generation_id=generation_id,
        item_id=claim.item_id,
        batch_id=claim.batch_id,
        idx=claim.item_index,
        content=question.model_dump(),
        now=now,
    )
    batch.in_progress_items -= 1
    batch.completed_items += 1
    clock = progress.active_clock_ms(batch.active_ms, batch.running_since, now)
    batch.completion_window = progress.push_completion(batch.completion_window, clock)
    event = ItemCompleted(
        item_id=str(claim.item_id),
        item_index=claim.item_index,
        generation_id=str(generation_id),
        duration_ms=duration_ms,
        completed_at=iso(now),
    )
    await _append(session, batch, event, now=now)
    await _after_item(session, batch, now=now)
    return True


async def fail_item(
    session: AsyncSession,
    claim: Claim,
    *,
    kind: ErrorKind,
    message: str,
    fatal: bool,
    policy: RetryPolicy,
    now: datetime,
    retry_after_ms: int | None = None,
) -> bool:
    """Records a failed attempt: back to pending while attempts remain, else failed. A fatal error fails
    the batch at once. False when this attempt no longer holds the item."""
    batch = await repository.lock_batch(session, claim.batch_id)
    if batch is None:
        return False
    return await _fail_attempt(
        session,
        batch,
        claim.item_id,
        claim.item_index,
        claim.attempt,
        kind=kind,
        message=message,
        fatal=fatal,
        policy=policy,
        now=now,
        retry_after_ms=retry_after_ms,
    )


async def expire_lease(
    session: AsyncSession, item_id: UUID, attempt: int, *, policy: RetryPolicy, now: datetime
) -> bool:
    """A worker stopped answering for its item (crashed, killed): the attempt counts as failed."""
    item = await repository.get_item(session, item_id)
    if item is None:
        return False
    batch = await repository.lock_batch(session, item.batch_id)
    if batch is None:
        return False
    return await _fail_attempt(
        session,
        batch,
        item_id,
        item.idx,
        attempt,
        kind="internal",
        message="The worker stopped responding (lease expired)",
        fatal=False,
        policy=policy,
        now=now,
        expired_before=now,
    )


async def top_up(session: AsyncSession, batch_id: UUID, *, now: datetime) -> list[UUID]:
    """Dispatches work until the batch's window is full again (work lost between commit and queue)."""
    batch = await repository.lock_batch(session, batch_id)
    if batch is None or batch.status not in (BatchStatus.queued, BatchStatus.running):
        return []
    in_flight = batch.in_progress_items + await repository.count_dispatched(session, batch.id)
    return await _dispatch(session, batch, batch.concurrency - in_flight, now=now)


# --- internals -----------------------------------------------------------------------------------------


async def _lock_owned(session: AsyncSession, batch_id: UUID, user: User) -> Batch:
    batch = await repository.lock_batch(session, batch_id)
    if batch is None:
        raise BatchNotFound(batch_id)
    if batch.owner_id != user.id:
        raise NotBatchOwner()
    return batch


async def _append(session: AsyncSession, batch: Batch, event: BatchEvent, *, now: datetime) -> None:
    """Appends `event` with the batch's next seq and sends the new snapshot along with it."""
    batch.last_seq += 1
    await log.append(session, batch.id, batch.last_seq, event.name, event.to_json(), at=now)
    log.attach_state(session, batch.id, snapshot_of(batch).to_json())


async def _dispatch(session: AsyncSession, batch: Batch, count: int, *, now: datetime) -> list[UUID]:
    ids = await repository.mark_dispatched(session, batch.id, count, now=now)
    session.info.setdefault(_DISPATCH, []).extend(ids)
    return ids


def _stop_clock(batch: Batch, now: datetime) -> None:
    batch.active_ms = progress.active_clock_ms(batch.active_ms, batch.running_since, now)
    batch.running_since = None


async def _after_item(session: AsyncSession, batch: Batch, *, now: datetime) -> None:
    """After an item finished an attempt: end the batch if nothing is left, else keep the window full."""
    if batch.batch_status.is_terminal:
        return
    if batch.pending_items == 0 and batch.in_progress_items == 0:
        if batch.failed_items == 0:
            status = BatchStatus.completed
        elif batch.completed_items == 0:
            status = BatchStatus.failed
            batch.error_message = batch.error_message or f"All {batch.failed_items} items failed."
        else:
            status = BatchStatus.completed_with_errors
        await _finish(session, batch, status, now=now)
    elif batch.status in (BatchStatus.queued, BatchStatus.running):
        await _dispatch(session, batch, 1, now=now)


async def _finish(session: AsyncSession, batch: Batch, status: BatchStatus, *, now: datetime) -> None:
    _stop_clock(batch, now)
    batch.status = status.value
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
    await _append(session, batch, event, now=now)


async def _fail_attempt(
    session: AsyncSession,
    batch: Batch,
    item_id: UUID,
    item_index: int,
    attempt: int,
    *,
    kind: ErrorKind,
    message: str,
    fatal: bool,
    policy: RetryPolicy,
    now: datetime,
    retry_after_ms: int | None = None,
    expired_before: datetime | None = None,
) -> bool:
    will_retry = not fatal and policy.will_retry(attempt) and not batch.batch_status.is_terminal
    values: dict[str, object] = {
        "last_error": message,
        "last_error_kind": kind,
        "will_retry": will_retry,
        "finished_at": now,
    }
    if will_retry:
        delay = timedelta(milliseconds=policy.delay_ms(attempt, retry_after_ms=retry_after_ms))
        values |= {"status": ItemStatus.pending.value, "next_attempt_at": now + delay, "dispatched_at": None}
    else:
        values |= {"status": ItemStatus.failed.value}
    if not await repository.finish_attempt(
        session, item_id, attempt, values=values, lease_expired_before=expired_before
    ):
        return False
    batch.in_progress_items -= 1
    if not will_retry:
        batch.failed_items += 1
    await _append(session, batch, _failed_event(item_id, item_index, attempt, kind, message, will_retry), now=now)
    if fatal and not batch.batch_status.is_terminal:
        await _fail_batch(session, batch, message, kind=kind, now=now)
    else:
        await _after_item(session, batch, now=now)
    return True


async def _fail_batch(session: AsyncSession, batch: Batch, message: str, *, kind: ErrorKind, now: datetime) -> None:
    """The provider cannot work at all: fail the attempts in flight, keep pending items for a retry."""
    batch.error_message = message
    for item in await repository.in_progress_items(session, batch.id):
        stopped = f"Batch stopped: {message}"
        await repository.finish_attempt(
            session,
            item.id,
            item.attempts,
            values={
                "status": ItemStatus.failed.value,
                "last_error": stopped,
                "last_error_kind": kind,
                "will_retry": False,
                "finished_at": now,
            },
        )
        batch.in_progress_items -= 1
        batch.failed_items += 1
        await _append(session, batch, _failed_event(item.id, item.idx, item.attempts, kind, stopped, False), now=now)
    await repository.clear_dispatches(session, batch.id)
    await _finish(session, batch, BatchStatus.failed, now=now)


def _failed_event(
    item_id: UUID, item_index: int, attempt: int, kind: ErrorKind, message: str, will_retry: bool
) -> ItemFailed:
    return ItemFailed(
        item_id=str(item_id),
        item_index=item_index,
        error_message=message,
        retry_count=attempt,
        will_retry=will_retry,
        error_kind=kind,
    )
