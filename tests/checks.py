"""Invariants every batch must keep, and bounded waits; shared by the tests."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any
from uuid import UUID

from sqlalchemy import func, select

from livebatch.batches.models import Batch, GeneratedItem, Item
from livebatch.db import Database
from livebatch.events.bus import LocalBus
from livebatch.events.log import LogEntry
from livebatch.generation.worker import Worker
from livebatch.parts import Parts
from livebatch.uow import Transactions, UnitOfWork

TERMINAL = {"completed", "completed_with_errors", "failed", "cancelled"}


async def load_batch(db: Database, batch_id: UUID | str) -> Batch:
    async with db.read_session() as session:
        batch = await session.get(Batch, UUID(str(batch_id)))
    assert batch is not None
    return batch


async def event_log(db: Database, batch_id: UUID | str) -> list[tuple[int, str, dict[str, Any]]]:
    async with db.read_session() as session:
        rows = await session.execute(
            select(LogEntry.seq, LogEntry.name, LogEntry.payload)
            .where(LogEntry.batch_id == UUID(str(batch_id)))
            .order_by(LogEntry.seq)
        )
        return [(seq, name, json.loads(payload)) for seq, name, payload in rows.all()]


async def assert_consistent(db: Database, batch_id: UUID | str) -> Batch:
    """The batch's counters, items, generated items and event log agree with one another."""
    batch = await load_batch(db, batch_id)
    events = await event_log(db, batch_id)
    seqs = [seq for seq, _, _ in events]
    assert seqs == list(range(1, batch.last_seq + 1)), "seqs must be 1..last_seq with no gap or repeat"
    async with db.read_session() as session:
        statuses: Counter[str] = Counter(
            dict(
                (
                    await session.execute(
                        select(Item.status, func.count()).where(Item.batch_id == batch.id).group_by(Item.status)
                    )
                ).all()
            )
        )
        generated = (
            (await session.execute(select(GeneratedItem.item_id).where(GeneratedItem.batch_id == batch.id)))
            .scalars()
            .all()
        )
        retrying = (
            await session.execute(
                select(func.count()).where(Item.batch_id == batch.id, Item.status == "pending", Item.will_retry)
            )
        ).scalar_one()
        completed_ids = (
            (await session.execute(select(Item.id).where(Item.batch_id == batch.id, Item.status == "completed")))
            .scalars()
            .all()
        )
    assert statuses["completed"] == batch.completed_items
    assert statuses["failed"] == batch.failed_items
    assert statuses["in_progress"] == batch.in_progress_items
    assert statuses["cancelled"] == batch.cancelled_items
    assert statuses["pending"] == batch.pending_items
    assert retrying == batch.retrying_items, "retrying_items counts the pending items that will be tried again"
    assert sum(statuses.values()) == batch.total_items
    completed_events = Counter(p["itemId"] for _, name, p in events if name == "item.completed")
    assert all(n == 1 for n in completed_events.values()), "an item completed twice"
    assert set(completed_events) == {str(i) for i in completed_ids}
    assert sorted(map(str, generated)) == sorted(map(str, completed_ids)), "generated items = completed items"
    if batch.status in TERMINAL:
        assert events[-1][1] == "batch.complete" and events[-1][2]["status"] == batch.status
    return batch


class Unqueued:
    """Units of work whose dispatched items are queued nowhere, only kept in `dispatched`: for driving the
    services by hand, or leaving work behind as a process that died before it queued it would."""

    def __init__(self, db: Database) -> None:
        self.dispatched: list[UUID] = []
        self._transactions = Transactions(db, LocalBus(), self)

    async def enqueue(self, item_ids: Sequence[UUID]) -> None:
        self.dispatched.extend(item_ids)

    def begin(self) -> AbstractAsyncContextManager[UnitOfWork]:
        return self._transactions.begin()


def worker_of(parts: Parts) -> Worker:
    assert parts.worker is not None, "these parts do no item work"
    return parts.worker


async def wait_for_status(
    rt: Parts, batch_id: UUID | str, statuses: set[str] | None = None, timeout: float = 60
) -> Batch:
    """Waits (woken by the bus, checking the database at least twice a second) until the batch reaches
    one of `statuses` (default: any final one); fails after `timeout` seconds."""
    wanted = statuses or TERMINAL
    with rt.bus.subscribe(str(batch_id)) as subscription:
        async with asyncio.timeout(timeout):
            while True:
                batch = await load_batch(rt.db, batch_id)
                if batch.status in wanted:
                    return batch
                await subscription.get(timeout=0.5)


async def wait_until(predicate: Any, timeout: float = 30, interval: float = 0.05) -> None:
    """Polls an async predicate until it holds (a condition with a deadline, not a fixed sleep)."""
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(interval)
