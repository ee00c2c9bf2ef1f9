"""Pause, resume, cancel and retry-failed on a running pipeline, and the transitions that are refused."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest
from sqlalchemy import select

from livebatch.batches import service, work
from livebatch.batches.models import GeneratedItem, Item
from livebatch.batches.service import Limits
from livebatch.batches.status import BatchStatus
from livebatch.batches.work import Claim
from livebatch.clock import utcnow
from livebatch.db import Database
from livebatch.generation.providers import GenerationError
from livebatch.parts import Parts
from tests.batches.conftest import Control, PartsFactory, ProbeProvider, control, spec, start_batch
from tests.batches.ledger import assert_attempts_accounted
from tests.checks import Unqueued, assert_consistent, event_log, load_batch, wait_for_status, wait_until, worker_of
from tests.conftest import Person


async def _items(rt: Parts, batch_id: UUID) -> list[Item]:
    async with rt.db.read_session() as session:
        rows = await session.execute(select(Item).where(Item.batch_id == batch_id).order_by(Item.idx))
        return list(rows.scalars())


async def test_pause_stops_new_items_while_in_flight_ones_finish_and_resume_runs_to_the_end(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    probe = ProbeProvider(held=True)
    rt = await open_parts(probe, batch_concurrency=3)
    owner = people["faculty"]
    batch_id = await start_batch(rt, owner, 10)
    await probe.wait_in_flight(3)

    paused = await control(rt, service.pause_batch, batch_id, owner.user)
    assert paused.status == "paused"
    probe.gate.set()

    async def in_flight_done() -> bool:
        return (await load_batch(rt.db, batch_id)).in_progress_items == 0

    await wait_until(in_flight_done)
    await worker_of(rt).sweeper.sweep()  # a sweeper pass must not start anything either
    assert probe.in_flight == 0
    batch = await assert_consistent(rt.db, batch_id)
    assert (batch.status, batch.completed_items, batch.pending_items) == ("paused", 3, 7)
    events = await event_log(rt.db, batch_id)
    names = [name for _, name, _ in events]
    after_pause = names[names.index("batch.paused") + 1 :]
    assert after_pause == ["item.completed"] * 3, "in-flight items finish, nothing new starts"

    await control(rt, service.resume_batch, batch_id, owner.user)
    batch = await wait_for_status(rt, batch_id)
    assert batch.status == "completed"
    await assert_consistent(rt.db, batch_id)
    names = [name for _, name, _ in await event_log(rt.db, batch_id)]
    between = names[names.index("batch.paused") + 1 : names.index("batch.resumed")]
    assert "item.started" not in between
    assert names.count("item.started") == names.count("item.completed") == 10


async def test_a_batch_paused_before_it_started_is_queued_again_and_runs_from_its_first_item(
    db: Database, people: dict[str, Person]
) -> None:
    """The page shows the status the batch API reads, after `batch.resumed` and after the first `item.started`:
    a resume before any item started leaves the batch queued, and its first claimed item sets it running."""
    owner = people["faculty"].user
    now = utcnow()
    unqueued = Unqueued(db)
    async with unqueued.begin() as uow:
        created = await service.create_batch(uow, spec(2), owner=owner, limits=Limits(concurrency=2), now=now)
        await uow.commit()
    for operation in (service.pause_batch, service.resume_batch):
        async with unqueued.begin() as uow:
            await operation(uow, created.id, user=owner, now=now)
            await uow.commit()
    resumed = await load_batch(db, created.id)
    assert (resumed.status, resumed.started_at) == (BatchStatus.queued, None)

    async with unqueued.begin() as uow:
        claim = await work.claim_item(uow, unqueued.dispatched[-1], now=now, lease=timedelta(minutes=1))
        await uow.commit()
    assert isinstance(claim, Claim)
    running = await load_batch(db, created.id)
    assert running.status == BatchStatus.running and running.started_at is not None
    names = [name for _, name, _ in await event_log(db, created.id)]
    assert names == ["batch.paused", "batch.resumed", "item.started"]


async def test_cancel_ends_the_batch_cancelled_and_marks_its_unfinished_items(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    probe = ProbeProvider(held=True)
    rt = await open_parts(probe, batch_concurrency=2)
    owner = people["faculty"]
    batch_id = await start_batch(rt, owner, 8)
    await probe.wait_in_flight(2)

    cancelled = await control(rt, service.cancel_batch, batch_id, owner.user)
    assert cancelled.status == "cancelled"
    probe.gate.set()  # the two attempts in flight come back to a cancelled item: discarded
    await probe.wait_in_flight(0)
    await worker_of(rt).sweeper.sweep()

    batch = await assert_consistent(rt.db, batch_id)
    assert (batch.status, batch.cancelled_items, batch.completed_items, batch.pending_items) == ("cancelled", 8, 0, 0)
    assert batch.in_progress_items == 0 and batch.completed_at is not None
    assert {item.status for item in await _items(rt, batch_id)} == {"cancelled"}
    events = await event_log(rt.db, batch_id)
    assert events[-1][1] == "batch.complete"
    assert events[-1][2] | {"totalDurationMs": 0} == {
        "batchId": str(batch_id),
        "status": "cancelled",
        "totalItems": 8,
        "completedItems": 0,
        "failedItems": 0,
        "totalDurationMs": 0,
    }
    async with rt.db.read_session() as session:
        assert (await session.execute(select(GeneratedItem))).first() is None


async def test_retry_failed_reruns_only_the_failed_items(open_parts: PartsFactory, people: dict[str, Person]) -> None:
    probe = ProbeProvider()
    for index in (1, 4):
        probe.fail(index, *(GenerationError("provider_error", "Provider error: HTTP 503") for _ in range(2)))
    rt = await open_parts(probe, max_attempts=2)
    owner = people["faculty"]
    batch_id = await start_batch(rt, owner, 6)
    batch = await wait_for_status(rt, batch_id)
    assert (batch.status, batch.completed_items, batch.failed_items) == ("completed_with_errors", 4, 2)
    await assert_attempts_accounted(rt.db, batch_id, max_attempts=2)
    generations = {item.idx: item.generation_id for item in await _items(rt, batch_id) if item.status == "completed"}
    assert sorted(generations) == [0, 2, 3, 5]

    retried = await control(rt, service.retry_failed, batch_id, owner.user, limits=rt.limits)
    assert retried.status == "running"
    batch = await wait_for_status(rt, batch_id)
    assert (batch.status, batch.completed_items, batch.failed_items) == ("completed", 6, 0)
    await assert_consistent(rt.db, batch_id)
    items = await _items(rt, batch_id)
    assert {item.idx: item.generation_id for item in items if item.idx in generations} == generations
    assert {idx: n for (_, idx), n in probe.calls.items()} == {0: 1, 1: 3, 2: 1, 3: 1, 4: 3, 5: 1}
    events = await event_log(rt.db, batch_id)
    names = [name for _, name, _ in events]
    rerun = events[names.index("batch.retried") :]
    assert rerun[0][2]["retriedItems"] == 2
    assert {p["itemIndex"] for _, name, p in rerun if name == "item.started"} == {1, 4}
    assert names.count("batch.complete") == 2


async def test_refused_transitions_say_why_and_change_nothing(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    probe = ProbeProvider()
    rt = await open_parts(probe, batch_concurrency=1)
    owner = people["faculty"]
    done = await start_batch(rt, owner, 1)
    await wait_for_status(rt, done)
    probe.gate.clear()  # from here on, generations wait: the running batch stays running
    running = await start_batch(rt, owner, 2)
    await probe.wait_in_flight(1)
    paused = await start_batch(rt, owner, 2)
    await control(rt, service.pause_batch, paused, owner.user)

    cases: list[tuple[Control, UUID, str]] = [
        (service.pause_batch, done, "A completed batch cannot be paused."),
        (service.pause_batch, paused, "A paused batch cannot be paused."),
        (service.resume_batch, running, "A running batch cannot be resumed; only a paused one."),
        (service.resume_batch, done, "A completed batch cannot be resumed; only a paused one."),
        (service.cancel_batch, done, "A completed batch cannot be cancelled."),
        (service.retry_failed, running, "A running batch has no failed items to retry."),
        (service.retry_failed, done, "A completed batch has no failed items to retry."),
    ]
    for operation, batch_id, message in cases:
        before = await load_batch(rt.db, batch_id)
        before_log = await event_log(rt.db, batch_id)
        extra = {"limits": rt.limits} if operation is service.retry_failed else {}
        with pytest.raises(service.InvalidTransition) as refused:
            async with rt.transactions.begin() as uow:
                await operation(uow, batch_id, user=owner.user, now=rt.now(), **extra)
        assert (refused.value.status_code, refused.value.code, refused.value.message) == (409, "INVALID_STATE", message)
        after = await load_batch(rt.db, batch_id)
        assert (after.status, after.last_seq) == (before.status, before.last_seq)
        if after.status != "running":
            assert await event_log(rt.db, batch_id) == before_log

    with pytest.raises(service.NotBatchOwner):
        async with rt.transactions.begin() as uow:
            await service.pause_batch(uow, running, user=people["other"].user, now=rt.now())
    await control(rt, service.cancel_batch, running, owner.user)
    await control(rt, service.cancel_batch, paused, owner.user)
    with pytest.raises(service.InvalidTransition, match=r"A cancelled batch cannot be cancelled\."):
        async with rt.transactions.begin() as uow:
            await service.cancel_batch(uow, paused, user=owner.user, now=rt.now())
    probe.gate.set()
