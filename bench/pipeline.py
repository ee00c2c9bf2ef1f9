"""Items per second through the real pipeline with a zero-latency provider, beside plain SQLAlchemy writes.

livebatch's pipeline runs in this process: a worker `Parts` (in-process Taskiq broker and bus, as the
embedded default; on PostgreSQL the same in-process broker, said in the figure's name) with the offline
provider at 0 ms latency and no failures, default concurrency (4 items of the batch at once). The clock
runs from the transaction that creates the batch until its `batch.complete` reaches the bus. "Outside
generation" is the share of that time not spent in the provider's `generate` (which at 0 ms latency is
pure CPU: composing the question). The PostgreSQL scratch database runs without synchronous commit, as
SQLite in WAL mode does (bench/scratch.py says why).

The baseline makes the writes the pipeline makes per item, in as many transactions (two per item), as
plain SQLAlchemy Core statements on the same engine, as many items at once as the pipeline: claim the
item, count it in progress and log `item.started`; mark it completed, store the generated item, update
the counters, log `item.completed` and dispatch the next item; and end the batch. No queue, no service
layer, no bus, no reads; each transaction updates the batch row first, the pipeline's lock order. It
writes 2 000 items: its rate is that of its transactions, whatever the count, and 10 000 would add four
minutes to `make bench` (its run time in the table is scaled to 10 000).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.common import Figure
from bench.scratch import Kind, scratch_database, seed, settings_for, spec, unqueued
from livebatch.batches import service
from livebatch.batches.models import Batch, GeneratedItem, Item
from livebatch.batches.service import Limits
from livebatch.clock import iso, utcnow
from livebatch.db import Database
from livebatch.events.bus import SubscriptionCutOff
from livebatch.events.log import LogEntry, Notice
from livebatch.generation.offline import OfflineProvider, compose
from livebatch.generation.providers import Generated, ItemRequest
from livebatch.parts import Parts
from livebatch.users.models import User

COUNT, QUICK_COUNT = 10_000, 200
# The baseline's rate is that of its transactions, the same for any count: a fifth of the items keeps
# `make bench` within its 10 minutes.
BASELINE_COUNT, QUICK_BASELINE_COUNT = 2_000, 200
LEASE = timedelta(seconds=30)


class TimedProvider:
    """The offline provider at zero latency, with the time spent inside it summed."""

    name = "offline"

    def __init__(self) -> None:
        self.inner = OfflineProvider(latency_ms=0, failure_rate=0.0)
        self.seconds = 0.0
        self.calls = 0

    async def generate(self, request: ItemRequest) -> Generated:
        started = time.perf_counter()
        try:
            return await self.inner.generate(request)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1

    async def aclose(self) -> None:
        await self.inner.aclose()


async def run_pipeline(rt: Parts, owner: User, count: int) -> float:
    """Seconds from creating a `count`-item batch to its `batch.complete` on the bus."""
    started = time.perf_counter()
    async with rt.transactions.begin() as uow:
        batch = await service.create_batch(uow, spec(count), owner=owner, limits=rt.limits, now=rt.now())
        await uow.commit()
    # Subscribed after the commit (the id is new): the batch cannot finish before this task yields, and
    # the row is read again whenever the subscription could have missed the end.
    subscription = rt.bus.subscribe(str(batch.id))
    try:
        while not await _finished(rt.db, batch.id):
            try:
                while (notice := await subscription.get(timeout=5.0)) is not None:
                    if isinstance(notice, Notice) and any(e.name == "batch.complete" for e in notice.events):
                        return time.perf_counter() - started
            except SubscriptionCutOff:
                subscription.close()
                subscription = rt.bus.subscribe(str(batch.id))
    finally:
        subscription.close()
    return time.perf_counter() - started


async def _finished(db: Database, batch_id: UUID) -> bool:
    async with db.read_session() as session:
        batch = await session.get(Batch, batch_id)
        assert batch is not None
        return batch.status.is_terminal


async def run_baseline(db: Database, owner: User, count: int, *, concurrency: int) -> float:
    """Seconds for the pipeline's writes of `count` items as plain transactions, `concurrency` items at once
    (the pipeline's batch concurrency), each worker taking the next item."""
    async with unqueued(db).begin() as uow:
        limits = Limits(max_target_count=count)
        created = await service.create_batch(uow, spec(count), owner=owner, limits=limits, now=utcnow())
        await uow.commit()
        batch_id = created.id
        rows = (await uow.session.execute(select(Item.id, Item.idx).where(Item.batch_id == batch_id))).all()
    items = [item_id for item_id, _ in sorted(rows, key=lambda row: row[1])]
    content = compose(
        ItemRequest(batch_id, 0, 1, "Cardiovascular Pathology", "single-best-answer", "medium")
    ).model_dump()
    taken, finished = iter(range(count)), [0]

    async def worker() -> None:
        for idx in taken:
            await _baseline_item(db, batch_id, items, idx, content)
            finished[0] += 1
            if finished[0] == count:
                async with db.engine.begin() as conn:
                    now = utcnow()
                    seq = await _next_seq(conn, batch_id, status="completed", completed_at=now)
                    await _log(conn, batch_id, seq, "batch.complete", {"batchId": str(batch_id)}, now)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def _baseline_item(db: Database, batch_id: UUID, items: list[UUID], idx: int, content: dict[str, Any]) -> None:
    """One item's writes: the claim's transaction, then the completion's (which dispatches a next item)."""
    item_id, now = items[idx], utcnow()
    # Each transaction updates the batch row first, as the pipeline locks it first: the same lock order.
    async with db.engine.begin() as conn:
        seq = await _next_seq(conn, batch_id, in_progress_items=Batch.in_progress_items + 1, status="running")
        await conn.execute(
            update(Item)
            .where(Item.id == item_id, Item.status == "pending")
            .values(
                status="in_progress",
                attempts=Item.attempts + 1,
                lease_expires_at=now + LEASE,
                started_at=now,
                dispatched_at=None,
            )
        )
        payload: dict[str, object] = {"itemId": str(item_id), "itemIndex": idx, "startedAt": iso(now)}
        await _log(conn, batch_id, seq, "item.started", payload, now)
    now, generation_id = utcnow(), uuid4()
    async with db.engine.begin() as conn:
        seq = await _next_seq(
            conn,
            batch_id,
            in_progress_items=Batch.in_progress_items - 1,
            completed_items=Batch.completed_items + 1,
            completion_window=list(range(idx, idx + 11)),
        )
        await conn.execute(
            update(Item)
            .where(Item.id == item_id, Item.status == "in_progress")
            .values(
                status="completed",
                finished_at=now,
                duration_ms=0,
                generation_id=generation_id,
                will_retry=False,
                lease_expires_at=None,
            )
        )
        await conn.execute(
            insert(GeneratedItem).values(
                id=generation_id, item_id=item_id, batch_id=batch_id, idx=idx, content=content, created_at=now
            )
        )
        payload = {
            "itemId": str(item_id),
            "itemIndex": idx,
            "generationId": str(generation_id),
            "durationMs": 0,
            "completedAt": iso(now),
        }
        await _log(conn, batch_id, seq, "item.completed", payload, now)
        await conn.execute(update(Item).where(Item.idx == idx + 1, Item.batch_id == batch_id).values(dispatched_at=now))


async def _next_seq(conn: AsyncConnection, batch_id: UUID, **values: object) -> int:
    stmt = (
        update(Batch)
        .where(Batch.id == batch_id)
        .values(last_seq=Batch.last_seq + 1, **values)
        .returning(Batch.last_seq)
    )
    seq: int = (await conn.execute(stmt)).scalar_one()
    return seq


async def _log(
    conn: AsyncConnection, batch_id: UUID, seq: int, name: str, payload: dict[str, object], now: datetime
) -> None:
    await conn.execute(
        insert(LogEntry).values(batch_id=batch_id, seq=seq, name=name, payload=json.dumps(payload), created_at=now)
    )


async def measure(kind: Kind, count: int, baseline_count: int) -> list[Figure]:
    async with scratch_database(kind, durable=False) as (url, data_dir):
        settings = settings_for(
            url, data_dir, max_target_count=max(count, baseline_count), stream_buffer=4 * count + 100
        )
        provider = TimedProvider()
        rt = Parts(settings, worker=True, provider=provider)
        await rt.start()
        try:
            owner = await seed(rt.db)
            pipeline_s = await run_pipeline(rt, owner, count)
        finally:
            await rt.aclose()
        assert provider.calls == count, f"{provider.calls} generations for {count} items"
        db = Database(url)
        try:
            baseline_s = await run_baseline(db, owner, baseline_count, concurrency=settings.batch_concurrency)
        finally:
            await db.dispose()
    broker = "in-process broker" + (", as embedded" if kind == "sqlite" else ", synchronous_commit off")
    return [
        Figure(
            f"pipeline, {count:,} items, {kind} ({broker})",
            count / pipeline_s,
            "items/s",
            baseline=baseline_count / baseline_s,
            target=("ratio>=", 0.5),
        ),
        Figure(f"pipeline time outside generation, {kind}", 100 * (1 - provider.seconds / pipeline_s), "%"),
        Figure(f"pipeline run, {count:,} items, {kind}", pipeline_s, "s", baseline=baseline_s * count / baseline_count),
    ]


def run(quick: bool) -> list[Figure]:
    count, baseline_count = (QUICK_COUNT, QUICK_BASELINE_COUNT) if quick else (COUNT, BASELINE_COUNT)
    out: list[Figure] = []
    for kind in ("sqlite", "postgresql"):
        out += asyncio.run(measure(kind, count, baseline_count))
    return out
