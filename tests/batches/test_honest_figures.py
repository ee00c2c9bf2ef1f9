"""The figures a faculty member reads beside the counts, as the services keep them: the items waiting to be
tried again, a throughput that stands still while paused, the time the batch has run without its pauses and
its whole-run rate once over, and the rows of items "Retry failed" queued again (which draw afresh)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from livebatch.batches import reads, repository, service, work
from livebatch.batches.lifecycle import Failure, snapshot_of
from livebatch.batches.retry import RetryPolicy
from livebatch.batches.service import Limits
from livebatch.batches.work import Claim
from livebatch.db import Database
from livebatch.events.bus import LocalBus
from livebatch.generation.offline import OfflineProvider, compose
from livebatch.generation.providers import Generated, GenerationError, ItemRequest
from livebatch.uow import Transactions
from tests.batches.conftest import PartsFactory, control, spec, start_batch
from tests.checks import Unqueued, assert_consistent, wait_for_status
from tests.conftest import Person

T0 = datetime(2026, 2, 19, 12, 0, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
POLICY = RetryPolicy(max_attempts=2, base_ms=0, cap_ms=0)


class Hand:
    """One batch driven by hand through the real services, with a clock that moves only when told."""

    def __init__(self, db: Database, owner: Person) -> None:
        self.db = db
        self.owner = owner.user
        self.queue = Unqueued(db)
        self.transactions = Transactions(db, LocalBus(), self.queue)
        self.limits = Limits(max_active_batches=sys.maxsize, concurrency=4, item_prior_ms=30_000)
        self.now = T0
        self.batch_id: UUID | None = None

    def at(self, seconds: float) -> datetime:
        self.now = T0 + timedelta(seconds=seconds)
        return self.now

    async def create(self, count: int) -> UUID:
        async with self.transactions.begin() as uow:
            batch = await service.create_batch(uow, spec(count), owner=self.owner, limits=self.limits, now=self.now)
            await uow.commit()
        self.batch_id = batch.id
        return batch.id

    async def start(self) -> Claim:
        item_id = self.queue.dispatched.pop(0)
        async with self.transactions.begin() as uow:
            claim = await work.claim_item(uow, item_id, now=self.now, lease=LEASE)
            await uow.commit()
        assert isinstance(claim, Claim), claim
        return claim

    async def complete(self, claim: Claim) -> None:
        request = ItemRequest(
            claim.batch_id, claim.item_index, claim.attempt, "x", claim.question_type, claim.difficulty
        )
        async with self.transactions.begin() as uow:
            assert await work.complete_item(uow, claim, compose(request), now=self.now)
            await uow.commit()

    async def fail(self, claim: Claim) -> None:
        async with self.transactions.begin() as uow:
            assert await work.fail_item(uow, claim, Failure("timeout", "slow"), policy=POLICY, now=self.now)
            await uow.commit()

    async def control(self, operation: Any, **extra: Any) -> None:
        async with self.transactions.begin() as uow:
            await operation(uow, self.batch_id, user=self.owner, now=self.now, **extra)
            await uow.commit()

    async def snapshot(self) -> dict[str, Any]:
        async with self.db.read_session() as session:
            batch = await repository.get_batch(session, self.batch_id)  # type: ignore[arg-type]
        assert batch is not None
        return dict(json.loads(snapshot_of(batch).to_json()))

    async def detail(self) -> dict[str, Any]:
        async with self.db.read_session() as session:
            read = await reads.batch_detail(session, self.batch_id, self.owner, feed=1000)  # type: ignore[arg-type]
        return read.model_dump(by_alias=True)


async def test_retrying_counts_the_items_waiting_for_another_attempt(db: Database, people: dict[str, Person]) -> None:
    hand = Hand(db, people["faculty"])
    await hand.create(4)
    first, second = await hand.start(), await hand.start()
    await hand.fail(first)
    await hand.fail(second)
    snap = await hand.snapshot()
    # Two rows say their attempt failed, and nothing has failed for good: "2 retrying", not "0 failed" alone.
    assert (snap["failedItems"], snap["retryingItems"], snap["pendingItems"]) == (0, 2, 4)
    again = await hand.start()  # the next dispatched one: one of the two, tried again
    assert again.item_index in (first.item_index, second.item_index, 2, 3)
    retried = [await hand.start() for _ in range(len(hand.queue.dispatched))]
    snap = await hand.snapshot()
    assert snap["retryingItems"] == 0 and snap["inProgressItems"] == 1 + len(retried)
    await hand.control(service.cancel_batch)
    assert (await hand.snapshot())["retryingItems"] == 0
    await assert_consistent(db, hand.batch_id)  # type: ignore[arg-type]


async def test_a_failed_batch_shows_no_retrying_items_until_retry_failed(
    db: Database, people: dict[str, Person]
) -> None:
    hand = Hand(db, people["faculty"])
    await hand.create(3)
    waiting, doomed = await hand.start(), await hand.start()
    await hand.fail(waiting)  # will retry
    async with hand.transactions.begin() as uow:  # a rejected key fails the batch
        await work.fail_item(uow, doomed, Failure("auth", "bad key", fatal=True), policy=POLICY, now=hand.now)
        await uow.commit()
    over = await hand.snapshot()
    assert over["retryingItems"] == 0, "a failed batch retries nothing by itself"
    await hand.control(service.retry_failed, limits=hand.limits)
    snap = await hand.snapshot()
    assert snap["retryingItems"] == 1, "the item that was waiting for its next attempt waits again"
    await assert_consistent(db, hand.batch_id)  # type: ignore[arg-type]


async def test_throughput_stands_still_while_paused(db: Database, people: dict[str, Person]) -> None:
    hand = Hand(db, people["faculty"])
    await hand.create(10)
    claims = [await hand.start() for _ in range(4)]
    hand.at(10)
    await hand.complete(claims[0])
    hand.at(20)
    await hand.complete(claims[1])
    before = await hand.snapshot()
    assert before["throughputRate"] == 6.0  # 2 in 20 s
    hand.at(21)
    await hand.control(service.pause_batch)
    hand.at(22)
    await hand.complete(claims[2])  # the items in flight finish while paused
    hand.at(23)
    await hand.complete(claims[3])
    paused = await hand.snapshot()
    assert paused["completedItems"] == 4
    assert paused["throughputRate"] == before["throughputRate"], "not 2 more in no time at all"
    assert paused["estimatedTimeRemainingMs"] == 60_000  # 6 left at 6/min
    detail = await hand.detail()
    assert (detail["activeMs"], detail["runningSince"], detail["runRate"]) == (21_000, None, None)

    hand.at(3600)  # an hour later
    await hand.control(service.resume_batch)
    detail = await hand.detail()
    assert detail["activeMs"] == 21_000 and detail["runningSince"] == "2026-02-19T13:00:00.000Z"


async def test_a_finished_batch_has_its_whole_run_rate_and_its_active_time(
    db: Database, people: dict[str, Person]
) -> None:
    hand = Hand(db, people["faculty"])
    await hand.create(4)
    claims = [await hand.start() for _ in range(4)]
    for second, claim in zip((10, 20), claims, strict=False):
        hand.at(second)
        await hand.complete(claim)
    hand.at(25)
    await hand.control(service.pause_batch)
    hand.at(600)  # paused for almost ten minutes
    await hand.control(service.resume_batch)
    for second, claim in zip((605, 615), claims[2:], strict=True):
        hand.at(second)
        await hand.complete(claim)
    detail = await hand.detail()
    assert detail["status"] == "completed"
    # It ran 25 s, then 15 s after the pause: 40 s of active time, 4 items in it, 6 a minute. The rate of
    # its last completions (4 over 605 s of wall time would say 0.4) is not what a finished batch shows.
    assert (detail["activeMs"], detail["runningSince"], detail["runRate"]) == (40_000, None, 6.0)


async def test_items_queued_again_keep_their_rows_and_draw_afresh(db: Database, people: dict[str, Person]) -> None:
    hand = Hand(db, people["faculty"])
    await hand.create(2)
    first, second = await hand.start(), await hand.start()
    await hand.complete(first)
    await hand.fail(second)
    await hand.fail(await hand.start())  # its second attempt: failed for good
    detail = await hand.detail()
    assert detail["status"] == "completed_with_errors"
    assert [row["status"] for row in detail["items"]] == ["completed", "failed"]

    hand.at(60)
    await hand.control(service.retry_failed, limits=hand.limits)
    detail = await hand.detail()
    row = detail["items"][1]
    # Listed, not gone until it starts again: the server says what the row is.
    assert (row["itemIndex"], row["status"], row["retried"], row["timestamp"]) == (
        second.item_index,
        "queued",
        True,
        "2026-02-19T12:01:00.000Z",
    )
    again = await hand.start()
    assert (again.item_index, again.attempt, again.requeues) == (second.item_index, 1, 1)
    await assert_consistent(db, hand.batch_id)  # type: ignore[arg-type]


async def test_the_offline_provider_draws_afresh_for_a_requeued_item() -> None:
    """Seeded by (batch, item, attempt) alone, a retried item replayed its failures: with a certain failure
    on the first draw, every requeue must still be able to succeed, and each draw is reproducible."""
    provider = OfflineProvider(latency_ms=0, failure_rate=0.5)
    batch = UUID(int=7)

    async def outcomes(requeues: int) -> list[str]:
        results = []
        for index in range(40):
            request = ItemRequest(batch, index, 1, "x", "single-best-answer", "easy", requeues=requeues)
            try:
                await provider.generate(request)
                results.append("ok")
            except GenerationError as exc:
                results.append(exc.kind)
        return results

    first = await outcomes(0)
    assert await outcomes(0) == first, "replayable"
    assert await outcomes(1) != first, "a requeued item does not replay its failures"
    assert await outcomes(1) == await outcomes(1)


class Recording(OfflineProvider):
    """The offline provider, keeping every request the worker made of it."""

    def __init__(self, failure_rate: float) -> None:
        super().__init__(latency_ms=0, failure_rate=failure_rate)
        self.requests: list[ItemRequest] = []

    async def generate(self, request: ItemRequest) -> Generated:
        self.requests.append(request)
        return await super().generate(request)


async def test_retry_failed_asks_the_provider_for_a_fresh_draw(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    """The issue's demo: seeded by (batch, item, attempt) with the attempts reset, Retry failed replayed the
    same failures and never succeeded. The worker now says how many times the item was queued again."""
    provider = Recording(failure_rate=0.5)
    rt = await open_parts(provider, max_attempts=1)
    owner = people["faculty"]
    # Half the attempts failing would trip the error-rate guard (issue 13), which this is not about.
    batch_id = await start_batch(rt, owner, 24, error_rate_guard=False)
    first = await wait_for_status(rt, batch_id)
    assert first.failed_items > 0
    before = len(provider.requests)
    await control(rt, service.retry_failed, batch_id, owner.user, limits=rt.limits)
    again = await wait_for_status(rt, batch_id)
    retried = provider.requests[before:]
    assert len(retried) == first.failed_items and all((r.requeues, r.attempt) == (1, 1) for r in retried)
    # Half the attempts fail: all of them failing again (as the replay did) would be 1 in 2^failed.
    assert again.completed_items > first.completed_items, "a fresh draw: not every failure comes back"
    await assert_consistent(rt.db, batch_id)
