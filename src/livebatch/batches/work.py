"""What the workers do to a batch: claim an item, record its result, give up a dead worker's attempt,
refill a window, and hand back work a stopping worker had received but not started.

A claim is a conditional update, so of two deliveries of one item only one wins; a result is recorded
only by the attempt that holds the item (its number fences it), so a late or duplicate result changes
nothing. Every writer locks the batch row first and its items after, so writers never deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from livebatch.batches import item_repository, progress, repository
from livebatch.batches.accounting import Charge
from livebatch.batches.events import ItemCompleted, ItemStarted
from livebatch.batches.lifecycle import (
    Attempt,
    Failure,
    add_discarded,
    after_item,
    append,
    count_attempt,
    dispatch,
    fail_attempt,
)
from livebatch.batches.questions import Question
from livebatch.batches.retry import RetryPolicy
from livebatch.batches.status import WORKING, BatchStatus, ItemStatus
from livebatch.clock import iso
from livebatch.uow import UnitOfWork


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
    requeues: int = 0  # times "Retry failed" queued the item again: a provider may draw afresh on it

    @property
    def held(self) -> Attempt:
        """The attempt this claim holds: only it may record the item's result."""
        return Attempt(self.item_id, self.item_index, self.attempt)


@dataclass(frozen=True, slots=True)
class NotYet:
    """The item is waiting out a retry delay until `at`."""

    at: datetime


async def claim_item(
    uow: UnitOfWork, item_id: UUID, *, now: datetime, lease: timedelta, owner: str | None = None
) -> Claim | NotYet | None:
    """Starts an attempt at the item; None when there is nothing to do (already taken, batch paused or over)."""
    found = await item_repository.get_item_and_course_title(uow.session, item_id)
    if found is None:
        return None
    item, course_title = found
    if item.status != ItemStatus.pending or item.dispatched_at is None:
        return None
    batch = await repository.lock_batch(uow.session, item.batch_id)
    if batch is None or batch.status not in WORKING:
        return None
    if item.next_attempt_at > now:
        return NotYet(item.next_attempt_at)
    claimed = await item_repository.claim_item(uow.session, item_id, now=now, lease=lease, owner=owner)
    if claimed is None:
        return None
    if batch.status == BatchStatus.queued:
        batch.status = BatchStatus.running
        batch.running_since = now
        batch.started_at = batch.started_at or now
    batch.in_progress_items += 1
    if claimed.was_retrying:
        batch.retrying_items -= 1
    await append(uow, batch, ItemStarted(item_id=str(item_id), item_index=item.idx, started_at=iso(now)), now=now)
    return Claim(
        item_id=item_id,
        batch_id=batch.id,
        item_index=item.idx,
        attempt=claimed.attempt,
        difficulty=item.difficulty,
        course_title=course_title,
        question_type=str(batch.config.get("questionType", "single-best-answer")),
        started_at=now,
        requeues=claimed.requeues,
    )


async def complete_item(
    uow: UnitOfWork, claim: Claim, question: Question, *, now: datetime, charge: Charge | None = None
) -> bool:
    """Records the generated item and what its attempt used (`charge`); False when this attempt no longer
    holds the item (result discarded, its usage counted all the same)."""
    batch = await repository.lock_batch(uow.session, claim.batch_id)
    if batch is None:
        return False
    generation_id = uuid4()
    duration_ms = max(0, round((now - claim.started_at).total_seconds() * 1000))
    if not await item_repository.record_completion(
        uow.session,
        claim.item_id,
        claim.attempt,
        generation_id=generation_id,
        duration_ms=duration_ms,
        now=now,
        charge=charge,
    ):
        await add_discarded(uow, batch, claim.held, charge)
        return False
    await repository.insert_generated(
        uow.session,
        generation_id=generation_id,
        item_id=claim.item_id,
        batch_id=claim.batch_id,
        idx=claim.item_index,
        content=question.model_dump(),
        now=now,
    )
    batch.in_progress_items -= 1
    batch.completed_items += 1
    count_attempt(batch, charge, failed=False)
    if batch.running_since is not None:
        # Paused, the active clock stands still: items finishing then would squeeze the window's span and
        # make the rate climb while nothing new starts. The throughput stays as it was at the pause.
        clock = progress.active_clock_ms(batch.active_ms, batch.running_since, now)
        batch.completion_window = progress.push_completion(batch.completion_window, clock)
    event = ItemCompleted(
        item_id=str(claim.item_id),
        item_index=claim.item_index,
        generation_id=str(generation_id),
        duration_ms=duration_ms,
        completed_at=iso(now),
    )
    await append(uow, batch, event, now=now)
    await after_item(uow, batch, now=now)
    return True


async def fail_item(uow: UnitOfWork, claim: Claim, failure: Failure, *, policy: RetryPolicy, now: datetime) -> bool:
    """Records a failed attempt: back to pending while attempts remain, else failed. A fatal failure fails
    the batch at once. False when this attempt no longer holds the item."""
    batch = await repository.lock_batch(uow.session, claim.batch_id)
    if batch is None:
        return False
    return await fail_attempt(uow, batch, claim.held, failure, policy=policy, now=now)


async def expire_lease(uow: UnitOfWork, item_id: UUID, number: int, *, policy: RetryPolicy, now: datetime) -> bool:
    """A worker stopped answering for its item (crashed, killed): the attempt counts as failed."""
    item = await item_repository.get_item(uow.session, item_id)
    if item is None:
        return False
    batch = await repository.lock_batch(uow.session, item.batch_id)
    if batch is None:
        return False
    failure = Failure("internal", "The worker stopped responding (lease expired)")
    attempt = Attempt(item_id, item.idx, number)
    return await fail_attempt(uow, batch, attempt, failure, policy=policy, now=now, expired_before=now)


async def release_own_claims(uow: UnitOfWork, batch_id: UUID, owner: str) -> int:
    """A restarted embedded process takes back the claims its previous life held when it was killed: the
    items are pending again at once, their attempt not counted (it never ended), and the batch's window
    dispatches them again (top_up). Their `item.started` stays in the log; the next claim sends another."""
    batch = await repository.lock_batch(uow.session, batch_id)
    if batch is None:
        return 0
    released = await item_repository.release_claims(uow.session, batch_id, owner)
    batch.in_progress_items -= len(released)
    if not batch.status.is_terminal:  # a finished batch counts no retries
        batch.retrying_items += sum(released)
    return len(released)


async def top_up(uow: UnitOfWork, batch_id: UUID, *, now: datetime) -> list[UUID]:
    """Dispatches work until the batch's window is full again (work lost between commit and queue)."""
    batch = await repository.lock_batch(uow.session, batch_id)
    if batch is None or batch.status not in WORKING:
        return []
    in_flight = batch.in_progress_items + await item_repository.count_dispatched(uow.session, batch.id)
    return await dispatch(uow, batch, batch.concurrency - in_flight, now=now)


async def hand_back(uow: UnitOfWork, item_ids: list[UUID], *, now: datetime) -> int:
    """Marks these items, received by a stopping worker and not started, as not dispatched, and dispatches
    their batches afresh so that other workers take them now; how many were handed back."""
    handed_back = 0
    for batch_id in await item_repository.batches_of(uow.session, item_ids):
        # The batch row first, its items after: the lock order of every writer.
        if await repository.lock_batch(uow.session, batch_id) is None:
            continue
        handed_back += await item_repository.undispatch(uow.session, batch_id, item_ids)
        await top_up(uow, batch_id, now=now)
    return handed_back
