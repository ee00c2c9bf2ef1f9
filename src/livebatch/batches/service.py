"""The faculty's commands: create a batch, pause, resume, cancel, retry what failed, change its budget.

Each checks the rules (status.py holds which command each status allows), changes rows, appends the
event and dispatches work in the caller's unit of work; the caller commits. Work is dispatched in a
window: at most `concurrency` items of a batch are claimed or on their way to a worker, and each
finished item dispatches the next one (lifecycle.py). That bounds a batch's concurrency across every
worker, and tells the sweeper which queued work may have been lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from livebatch.batches import failures, item_repository, repository
from livebatch.batches.events import BatchResumed, BatchRetried
from livebatch.batches.guards import Budget
from livebatch.batches.lifecycle import append, dispatch, finish, pause, rearm
from livebatch.batches.models import Batch
from livebatch.batches.schemas import BatchCreate, BudgetSpec, DifficultyDistribution, RetryFilter
from livebatch.batches.status import Action, BatchStatus, refusal
from livebatch.clock import iso
from livebatch.courses import repository as courses
from livebatch.errors import BadRequest, Conflict, Forbidden, NotFound, TooManyRequests
from livebatch.uow import UnitOfWork
from livebatch.users import repository as users
from livebatch.users.models import User

QUOTA_WINDOW = timedelta(days=1)


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


class DailyItemQuotaReached(TooManyRequests):
    code = "TOO_MANY_ITEMS"


class BudgetReached(Conflict):
    code = "BUDGET_REACHED"


class InvalidBatchConfig(BadRequest):
    """A config the rules refuse; `field` names what was wrong as the API does, so that the CLI can name its
    own option instead (`--count`, not `targetCount`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Limits:
    """What a new batch gets from the settings: the caps it is checked against, its concurrency, and the
    expected time of one item that its ETA starts from (the defaults are the settings' defaults)."""

    max_target_count: int = 1000
    max_active_batches: int = 5
    max_items_per_day: int = 10_000  # items in the batches a user created over the last 24 hours
    concurrency: int = 4
    item_prior_ms: int = 1500
    currency: str = "USD"  # of the prices, so of a batch's cost and of its cost budget
    model: str = "offline"  # what the provider's attempts are priced as
    priced: bool = False  # whether the price table has that model: a cost budget needs it


def parse_batch_id(raw: str) -> UUID:
    """A batch id from a URL; an id that is not well-formed names no batch, hence 404."""
    try:
        return UUID(raw)
    except ValueError:
        raise BatchNotFound(raw) from None


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


async def create_batch(uow: UnitOfWork, spec: BatchCreate, *, owner: User, limits: Limits, now: datetime) -> Batch:
    session = uow.session
    if spec.target_count > limits.max_target_count:
        message = f"targetCount must be at most {limits.max_target_count}, not {spec.target_count}."
        raise InvalidBatchConfig("targetCount", message)
    if await courses.get_course(session, spec.course_id) is None:
        raise InvalidBatchConfig("courseId", f"Course {spec.course_id!r} does not exist.")
    _check_budget(spec.budget, limits)
    # The count and the insert below, serialized per user: concurrent creates cannot all pass the check.
    await users.lock_user(session, owner.id)
    if await repository.count_active_batches(session, owner.id) >= limits.max_active_batches:
        raise TooManyActiveBatches(
            f"You already have {limits.max_active_batches} batches queued, running or paused; "
            "wait for one to finish or cancel one."
        )
    # Cancelled batches count too: their rows were written all the same.
    used = await repository.count_items_created_since(session, owner.id, now - QUOTA_WINDOW)
    if used + spec.target_count > limits.max_items_per_day:
        left = max(0, limits.max_items_per_day - used)
        raise DailyItemQuotaReached(
            f"Your batches of the last 24 hours hold {used} of your {limits.max_items_per_day} items a day "
            f"(cancelled ones included); {left} are left, not {spec.target_count}."
        )
    batch = await repository.add_batch(
        session,
        owner_id=owner.id,
        course_id=spec.course_id,
        config=spec.model_dump(by_alias=True),
        concurrency=limits.concurrency,
        item_prior_ms=limits.item_prior_ms,
        total_items=spec.target_count,
        currency=limits.currency,
        now=now,
    )
    difficulties = assign_difficulties(spec.target_count, spec.difficulty_distribution)
    await item_repository.insert_items(session, batch.id, difficulties, now=now)
    await dispatch(uow, batch, batch.concurrency, now=now)
    return batch


async def pause_batch(uow: UnitOfWork, batch_id: UUID, *, user: User, now: datetime) -> Batch:
    batch = await _lock_for(uow, batch_id, user, Action.pause)
    await pause(uow, batch, "user", now=now)
    return batch


async def resume_batch(uow: UnitOfWork, batch_id: UUID, *, user: User, now: datetime) -> Batch:
    batch = await _lock_for(uow, batch_id, user, Action.resume)
    _refuse_if_spent(batch, "resuming")
    rearm(batch)
    if batch.started_at is not None:
        batch.status = BatchStatus.running
        batch.running_since = now
    else:
        batch.status = BatchStatus.queued
    await append(uow, batch, BatchResumed(batch_id=str(batch.id), resumed_at=iso(now)), now=now)
    # Work dispatched before the pause was dropped by its workers; dispatch the window afresh.
    await item_repository.clear_dispatches(uow.session, batch.id)
    await dispatch(uow, batch, batch.concurrency - batch.in_progress_items, now=now)
    return batch


async def cancel_batch(uow: UnitOfWork, batch_id: UUID, *, user: User, now: datetime) -> Batch:
    batch = await _lock_for(uow, batch_id, user, Action.cancel)
    # In-flight attempts are cancelled too: their results arrive to an item no longer in progress.
    batch.cancelled_items += await item_repository.cancel_open_items(uow.session, batch.id)
    batch.in_progress_items = 0
    batch.retrying_items = 0  # no item is pending any more
    await finish(uow, batch, BatchStatus.cancelled, now=now)
    return batch


async def retry_failed(
    uow: UnitOfWork,
    batch_id: UUID,
    *,
    user: User,
    limits: Limits,
    now: datetime,
    only: RetryFilter | None = None,
) -> Batch:
    """Runs the batch's failed items again (with `only`, those it selects; the others stay failed), and the
    items a failed batch never attempted. `batch.retried` counts every item that runs again."""
    await users.lock_user(uow.session, user.id)  # before the batch: the order every such request takes
    batch = await _lock_for(uow, batch_id, user, Action.retry_failed)
    if await repository.count_active_batches(uow.session, user.id) >= limits.max_active_batches:
        raise TooManyActiveBatches(f"You already have {limits.max_active_batches} active batches.")
    _refuse_if_spent(batch, "retrying its failed items")
    rearm(batch)
    if only is None or only.is_empty:
        requeued = await item_repository.requeue_failed_items(uow.session, batch.id, now=now)
    else:
        counts = await item_repository.failure_counts(uow.session, batch.id)
        selected = failures.matching(counts, kinds=only.error_kinds, keys=only.groups)
        if not selected:
            # Running the batch with nothing to do would leave it running for ever.
            raise InvalidTransition("No failed item of this batch matches the filter; nothing was retried.")
        requeued = await item_repository.requeue_failed_items(uow.session, batch.id, now=now, errors=selected)
    batch.failed_items -= requeued
    retried = batch.pending_items
    batch.status = BatchStatus.running
    batch.running_since = now
    batch.completed_at = None
    batch.error_message = None
    await append(uow, batch, BatchRetried(batch_id=str(batch.id), retried_items=retried, retried_at=iso(now)), now=now)
    await item_repository.clear_dispatches(uow.session, batch.id)
    await dispatch(uow, batch, batch.concurrency, now=now)
    return batch


async def set_budget(
    uow: UnitOfWork, batch_id: UUID, budget: BudgetSpec, *, user: User, limits: Limits, now: datetime
) -> Batch:
    """Sets (raises, lowers, removes) the batch's budget, in any status; a batch paused because its budget was
    spent stays paused until someone resumes it. `now` is unused: a budget change is not an event."""
    batch = await repository.lock_batch(uow.session, batch_id)
    if batch is None:
        raise BatchNotFound(batch_id)
    if batch.owner_id != user.id:
        raise NotBatchOwner()
    _check_budget(budget, limits)
    capped = budget.cost is not None or budget.tokens is not None
    # A new dict: the JSON column is not watched for changes in place.
    batch.config = {**batch.config, "budget": budget.model_dump() if capped else None}
    return batch


def _check_budget(budget: BudgetSpec | None, limits: Limits) -> None:
    if budget is not None and budget.cost is not None and not limits.priced:
        raise BadRequest(
            f"budget.cost needs a price for model {limits.model!r} in LIVEBATCH_PRICES, or the cost could not be "
            "counted; give budget.tokens instead."
        )


def _refuse_if_spent(batch: Batch, doing: str) -> None:
    budget = Budget.of(batch.config)
    if budget.reached(tokens=batch.prompt_tokens + batch.completion_tokens, cost_nanos=batch.cost_nanos):
        raise BudgetReached(
            f"The batch's budget ({budget.describe(batch.currency)}) is spent; raise it before {doing}."
        )


async def _lock_for(uow: UnitOfWork, batch_id: UUID, user: User, action: Action) -> Batch:
    """The user's batch, locked, once `action` is allowed in its status."""
    batch = await repository.lock_batch(uow.session, batch_id)
    if batch is None:
        raise BatchNotFound(batch_id)
    if batch.owner_id != user.id:
        raise NotBatchOwner()
    refused = refusal(action, batch.status)
    if refused is not None:
        raise InvalidTransition(refused)
    return batch
