"""Every snapshot adds up, whatever happens to its batch: random sequences of starts, completions,
failures, expired leases, pauses, resumes, cancels and retries, through the real services and database.

After each step, every snapshot the step published (one per committed unit of work) and the snapshot a
reader gets from the batch row must hold: completed + failed + in progress + pending + cancelled = total,
no count below 0, each count the number of items in that status (and `retryingItems` the pending ones
that failed an attempt), and an ETA that is 0 only when nothing is left to run."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livebatch.batches import item_repository, repository, service, work
from livebatch.batches.lifecycle import Failure, snapshot_of
from livebatch.batches.retry import RetryPolicy
from livebatch.batches.service import InvalidTransition, Limits
from livebatch.batches.work import Claim
from livebatch.db import Database
from livebatch.events.bus import LocalBus, Subscription
from livebatch.events.log import Notice
from livebatch.generation.offline import compose
from livebatch.generation.providers import ItemRequest
from livebatch.uow import Transactions
from livebatch.users.models import User
from tests.batches.conftest import spec
from tests.checks import Unqueued, assert_consistent
from tests.conftest import Person

STATUS_OF = {
    "completedItems": "completed",
    "failedItems": "failed",
    "inProgressItems": "in_progress",
    "pendingItems": "pending",
    "cancelledItems": "cancelled",
}
COUNTS = tuple(STATUS_OF)
T0 = datetime(2026, 2, 19, 12, 0, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
PRIOR_MS = 30_000
# Two attempts an item, retried at once: a second failure is final, and a retry is due when it is drawn.
POLICY = RetryPolicy(max_attempts=2, base_ms=0, cap_ms=0)

# Weighted by repetition: work happens more often than a faculty member presses a button.
ACTIONS = (
    *("start",) * 8,
    *("complete",) * 6,
    *("fail",) * 4,
    *("fatal", "fatal", "expire", "cancel"),
    *("pause", "resume") * 2,
    *("retry",) * 3,
)
STEPS = st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(0, 7)), min_size=15, max_size=40)


@dataclass
class Run:
    """One batch driven by hand: the work queued for it, the attempts held, and a clock that only moves on."""

    transactions: Transactions
    queue: Unqueued
    batch_id: UUID
    owner: User
    limits: Limits
    now: datetime = T0
    claims: list[Claim] = field(default_factory=list)

    def tick(self, by: timedelta = timedelta(seconds=1)) -> datetime:
        self.now += by
        return self.now

    async def step(self, action: str, pick: int) -> None:
        if action == "start":
            await self._start(pick)
        elif action in ("complete", "fail", "fatal") and self.claims:
            claim = self.claims.pop(pick % len(self.claims))
            await self._finish(claim, action)
        elif action == "expire" and self.claims:  # its worker died: the sweeper fails the attempt after the lease
            claim = self.claims.pop(pick % len(self.claims))
            now = self.tick(LEASE + timedelta(seconds=1))
            async with self.transactions.begin() as uow:
                if await work.expire_lease(uow, claim.item_id, claim.attempt, policy=POLICY, now=now):
                    await uow.commit()
        elif action in ("pause", "resume", "cancel", "retry"):
            await self._control(action)

    async def _start(self, pick: int) -> None:
        if not self.queue.dispatched:
            return
        item_id = self.queue.dispatched.pop(pick % len(self.queue.dispatched))
        async with self.transactions.begin() as uow:
            claimed = await work.claim_item(uow, item_id, now=self.tick(), lease=LEASE)
            await uow.commit()
        if isinstance(claimed, Claim):
            self.claims.append(claimed)

    async def _finish(self, claim: Claim, action: str) -> None:
        now = self.tick()
        async with self.transactions.begin() as uow:
            if action == "complete":
                request = ItemRequest(
                    claim.batch_id,
                    claim.item_index,
                    claim.attempt,
                    course_title=claim.course_title,
                    question_type=claim.question_type,
                    difficulty=claim.difficulty,
                )
                done = await work.complete_item(uow, claim, compose(request), now=now)
            else:
                failure = Failure("auth", "bad key", fatal=True) if action == "fatal" else Failure("timeout", "slow")
                done = await work.fail_item(uow, claim, failure, policy=POLICY, now=now)
            if done:
                await uow.commit()

    async def _control(self, action: str) -> None:
        operations: dict[str, Any] = {
            "pause": service.pause_batch,
            "resume": service.resume_batch,
            "cancel": service.cancel_batch,
            "retry": service.retry_failed,
        }
        extra = {"limits": self.limits} if action == "retry" else {}
        try:
            async with self.transactions.begin() as uow:
                await operations[action](uow, self.batch_id, user=self.owner, now=self.tick(), **extra)
                await uow.commit()
        except InvalidTransition:
            return  # not allowed in this status: nothing changed


def assert_adds_up(snapshot: dict[str, Any], *, finished: bool, concurrency: int, where: str) -> None:
    total = snapshot["totalItems"]
    counts = {name: snapshot[name] for name in COUNTS}
    assert min(counts.values()) >= 0, (where, counts)
    assert sum(counts.values()) == total, (where, counts)
    assert snapshot["percentage"] == snapshot["completedItems"] * 100 // total
    left = snapshot["pendingItems"] + snapshot["inProgressItems"]
    eta = snapshot["estimatedTimeRemainingMs"]
    if finished or left == 0:
        assert eta == 0, (where, snapshot)
    elif snapshot["completedItems"] == 0:  # no rate yet: the prior's estimate
        assert snapshot["throughputRate"] == 0
        assert eta == -(-left // concurrency) * PRIOR_MS, (where, snapshot)
    else:
        assert eta > 0, (where, snapshot)


def published(subscription: Subscription) -> list[Notice]:
    notices: list[Notice] = []
    while (notice := subscription.get_nowait()) is not None:
        assert isinstance(notice, Notice)
        notices.append(notice)
    return notices


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples on every run, like the suite's other seeded tests
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # each example makes its own batch
)
@given(count=st.integers(1, 6), concurrency=st.integers(1, 3), steps=STEPS)
async def test_every_snapshot_adds_up_to_the_total_whatever_happens(
    db: Database, people: dict[str, Person], count: int, concurrency: int, steps: list[tuple[str, int]]
) -> None:
    owner = people["faculty"].user
    bus, queue = LocalBus(), Unqueued(db)
    transactions = Transactions(db, bus, queue)
    limits = Limits(max_active_batches=sys.maxsize, concurrency=concurrency, item_prior_ms=PRIOR_MS)
    async with transactions.begin() as uow:
        batch = await service.create_batch(uow, spec(count), owner=owner, limits=limits, now=T0)
        await uow.commit()
    run = Run(transactions, queue, batch.id, owner, limits)
    with bus.subscribe(str(batch.id)) as subscription:
        for number, (action, pick) in enumerate(steps):
            await run.step(action, pick)
            where = f"step {number}: {action}"
            for notice in published(subscription):
                assert notice.state is not None
                finished = notice.events[-1].name == "batch.complete"
                assert_adds_up(json.loads(notice.state), finished=finished, concurrency=concurrency, where=where)
            async with db.read_session() as session:
                row = await repository.get_batch(session, batch.id)
                statuses = await item_repository.count_items_by_status(session, batch.id)
                retrying = await item_repository.count_retrying(session, batch.id)
            assert row is not None
            assert row.retrying_items == retrying, where
            snapshot = json.loads(snapshot_of(row).to_json())
            assert_adds_up(
                snapshot, finished=row.status.is_terminal, concurrency=concurrency, where=f"{where}, the row"
            )
            # Each count is the number of items in that status: the truth the counters stand for.
            assert {name: snapshot[name] for name in COUNTS} == {
                name: statuses.get(status, 0) for name, status in STATUS_OF.items()
            }, where
            # The pending items that wait for another attempt, while the batch runs (none once it is over).
            assert snapshot["retryingItems"] == (0 if row.status.is_terminal else retrying), where
    await assert_consistent(db, batch.id)  # the counters, the items and the event log agree
