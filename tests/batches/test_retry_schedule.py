"""When a failed item runs again: exponential backoff with jitter, on the item's `next_attempt_at`;
never before the provider's `Retry-After`."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import select

from livebatch.batches import service, work
from livebatch.batches.lifecycle import Failure
from livebatch.batches.models import Item
from livebatch.batches.retry import RetryPolicy
from livebatch.batches.service import Limits
from livebatch.batches.work import Claim, NotYet
from livebatch.clock import utcnow
from livebatch.db import Database
from livebatch.users.models import User
from tests.batches.conftest import spec
from tests.checks import Unqueued, assert_consistent
from tests.conftest import Person

LEASE = timedelta(minutes=1)


async def _batch(db: Database, owner: User, count: int, now: datetime) -> list[UUID]:
    unqueued = Unqueued(db)
    async with unqueued.begin() as uow:
        # Every attempt fails here, on purpose: the error-rate guard would pause the batch at the 11th.
        batch = spec(count, error_rate_guard=False)
        await service.create_batch(uow, batch, owner=owner, limits=Limits(concurrency=count), now=now)
        await uow.commit()
    return unqueued.dispatched


async def _attempt(
    db: Database, item_id: UUID, *, at: datetime, policy: RetryPolicy, retry_after_ms: int | None = None
) -> Item:
    """Claims the item at `at`, fails that attempt at once; returns the item row after."""
    async with Unqueued(db).begin() as uow:
        claim = await work.claim_item(uow, item_id, now=at, lease=LEASE)
        assert isinstance(claim, Claim), claim
        failure = Failure("rate_limited", "Rate limited", retry_after_ms=retry_after_ms)
        await work.fail_item(uow, claim, failure, policy=policy, now=at)
        await uow.commit()
    async with db.read_session() as session:
        item = (await session.execute(select(Item).where(Item.id == item_id))).scalar_one()
    return item


def _ms(delta: timedelta) -> float:
    return delta.total_seconds() * 1000


async def test_each_retry_waits_twice_as_long_give_or_take_jitter(db: Database, people: dict[str, Person]) -> None:
    policy = RetryPolicy(max_attempts=3, base_ms=1000, cap_ms=60_000, rng=random.Random(5))
    t0 = utcnow()
    ids = await _batch(db, people["faculty"].user, 8, t0)

    first = [await _attempt(db, item_id, at=t0, policy=policy) for item_id in ids]
    delays = [_ms(item.next_attempt_at - t0) for item in first]
    assert all(500 <= d <= 1000 for d in delays), delays
    assert len(set(delays)) == len(delays), "jitter spreads the retries"
    assert all(item.status == "pending" and item.will_retry for item in first)

    second = []
    for item in first:
        async with Unqueued(db).begin() as uow:  # too early: the item waits, nothing is claimed
            early = await work.claim_item(
                uow, item.id, now=item.next_attempt_at - timedelta(milliseconds=1), lease=LEASE
            )
            await uow.rollback()
        assert early == NotYet(item.next_attempt_at)
        second.append(await _attempt(db, item.id, at=item.next_attempt_at, policy=policy))
    assert all(1000 <= _ms(b.next_attempt_at - a.next_attempt_at) <= 2000 for a, b in zip(first, second, strict=True))

    third = [await _attempt(db, item.id, at=item.next_attempt_at, policy=policy) for item in second]
    assert all((item.status, item.attempts, item.will_retry) == ("failed", 3, False) for item in third)
    batch = await assert_consistent(db, third[0].batch_id)
    assert (batch.status, batch.failed_items) == ("failed", 8)


async def test_retry_after_is_honoured_when_longer_than_the_backoff(db: Database, people: dict[str, Person]) -> None:
    policy = RetryPolicy(max_attempts=3, base_ms=100, cap_ms=1000, rng=random.Random(1))
    t0 = utcnow()
    slow, quick = await _batch(db, people["faculty"].user, 2, t0)
    item = await _attempt(db, slow, at=t0, policy=policy, retry_after_ms=5_000)
    assert item.next_attempt_at - t0 == timedelta(seconds=5)
    item = await _attempt(db, quick, at=t0, policy=policy, retry_after_ms=1)
    assert 50 <= _ms(item.next_attempt_at - t0) <= 100
