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

Accounting and guards (issue 13) are measured the same way, beside themselves turned off, in the same run:
"on" is a provider that reports each answer's usage, a price table that prices it, the error-rate guard on
and a token budget that is never reached (so both guards are checked after every attempt); "off" is the
same pipeline with no usage reported, no prices, the guard off and no budget, so that none of it runs.
The two variants run in `ROUNDS` pairs, back to back, each on a fresh database; the figure is the median over
the pairs of the extra CPU time per item of this process (which runs the whole pipeline, threads included),
with the medians of the CPU time and the rate of each variant beside it.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import timeit
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.common import Figure
from bench.scratch import Kind, scratch_database, seed, settings_for, spec, unqueued
from livebatch.batches import lifecycle, service
from livebatch.batches.accounting import Usage, charge
from livebatch.batches.models import Batch, GeneratedItem, Item
from livebatch.batches.schemas import BudgetSpec
from livebatch.batches.service import Limits
from livebatch.clock import iso, utcnow
from livebatch.config import ModelPrice
from livebatch.db import Database
from livebatch.events.bus import SubscriptionCutOff
from livebatch.events.log import LogEntry, Notice
from livebatch.generation.offline import OfflineProvider, compose
from livebatch.generation.providers import Generated, ItemRequest
from livebatch.parts import Parts
from livebatch.users.models import User

COUNT, QUICK_COUNT = 10_000, 200
GUARDS_COUNT, QUICK_GUARDS_COUNT = 300, 100
ROUNDS, QUICK_ROUNDS = 12, 1
PRICES = {"offline": ModelPrice(input=0.15, output=0.60)}
# The baseline's rate is that of its transactions, the same for any count: a fifth of the items keeps
# `make bench` within its 10 minutes.
BASELINE_COUNT, QUICK_BASELINE_COUNT = 2_000, 200
LEASE = timedelta(seconds=30)


class TimedProvider:
    """The offline provider at zero latency, with the time spent inside it summed; `usage=False`: it reports no
    usage, as a provider that counts nothing would."""

    name = "offline"

    def __init__(self, *, usage: bool = True) -> None:
        self.inner = OfflineProvider(latency_ms=0, failure_rate=0.0)
        self.usage = usage
        self.seconds = 0.0
        self.calls = 0

    async def generate(self, request: ItemRequest) -> Generated:
        started = time.perf_counter()
        try:
            generated = await self.inner.generate(request)
            return generated if self.usage else Generated(generated.question)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1

    async def aclose(self) -> None:
        await self.inner.aclose()


async def run_pipeline(rt: Parts, owner: User, count: int, *, guarded: bool | None = None) -> float:
    """Seconds from creating a `count`-item batch to its `batch.complete` on the bus. `guarded`: with a budget
    and the error-rate guard (True), with neither (False), or as a client that asks for nothing (None)."""
    batch_spec = spec(count)
    if guarded is not None:
        budget = BudgetSpec(tokens=10**12) if guarded else None
        batch_spec = batch_spec.model_copy(update={"budget": budget, "error_rate_guard": guarded})
    started = time.perf_counter()
    async with rt.transactions.begin() as uow:
        batch = await service.create_batch(uow, batch_spec, owner=owner, limits=rt.limits, now=rt.now())
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
        limits = Limits(max_target_count=count, max_items_per_day=10**9)  # a run writes more than a day's quota
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


async def run_variant(kind: Kind, count: int, *, guarded: bool) -> tuple[float, float]:
    """Items per second of a `count`-item batch with accounting and guards on or off, on a fresh database, and
    the CPU time per item (ms) of this process, which runs the whole pipeline (threads included): the cost
    that other processes on a busy machine do not blur."""
    async with scratch_database(kind, durable=False) as (url, data_dir):
        prices = PRICES if guarded else {}
        settings = settings_for(url, data_dir, max_target_count=count, stream_buffer=4 * count + 100, prices=prices)
        provider = TimedProvider(usage=guarded)
        rt = Parts(settings, worker=True, provider=provider)
        await rt.start()
        try:
            owner = await seed(rt.db)
            cpu = time.process_time()
            seconds = await run_pipeline(rt, owner, count, guarded=guarded)
            cpu = time.process_time() - cpu
            async with rt.db.read_session() as session:
                batch = (await session.execute(select(Batch))).scalar_one()
        finally:
            await rt.aclose()
    counted = batch.prompt_tokens > 0 and batch.cost_nanos > 0 and len(batch.recent_outcomes) == 20
    assert counted == guarded and batch.status == "completed", (guarded, batch.prompt_tokens, batch.status)
    return count / seconds, cpu * 1000 / count


async def measure_guards(kind: Kind, count: int, rounds: int) -> list[Figure]:
    """Accounting and guards on against off, in pairs run back to back (which goes first alternates), so that
    each pair meets the same load from the rest of the machine: the figure is the median of the pairs' ratios
    of CPU time per item, which a busy stretch of a few seconds moves much less than either variant's own."""
    pairs: list[tuple[tuple[float, float], tuple[float, float]]] = []
    for n in range(rounds):
        order = (False, True) if n % 2 == 0 else (True, False)
        first, second = [await run_variant(kind, count, guarded=guarded) for guarded in order]
        on, off = (second, first) if order[0] is False else (first, second)
        pairs.append((on, off))
    extra = statistics.median(on[1] / off[1] for on, off in pairs) - 1
    label = f"{count:,} items, {kind}, median of {rounds} pairs"
    off_cpu_ms = statistics.median(off[1] for _, off in pairs)
    own_us = own_cost_us()
    return [
        Figure(f"extra CPU per item of accounting and guards ({label})", 100 * extra, "%", target=("<", 10)),
        Figure(
            f"accounting and guards' own Python per attempt, share of the pipeline's CPU per item, {kind}",
            100 * own_us / (off_cpu_ms * 1000),
            "%",
        ),
        Figure(
            f"pipeline CPU per item with accounting and guards ({label}; baseline: off)",
            statistics.median(on[1] for on, _ in pairs),
            "ms",
            baseline=statistics.median(off[1] for _, off in pairs),
        ),
        Figure(
            f"pipeline with accounting and guards ({label}; baseline: off)",
            statistics.median(on[0] for on, _ in pairs),
            "items/s",
            baseline=statistics.median(off[0] for _, off in pairs),
        ),
    ]


def own_cost_us(repeat: int = 20_000) -> float:
    """Microseconds of Python that accounting and guards add to one recorded attempt, away from any I/O: price
    the usage, count it on the batch with the outcome, check both guards. (Not counted: the few extra
    parameters of the two UPDATEs the attempt runs anyway.)"""
    batch = Batch(
        config={"budget": {"cost": None, "tokens": 10**12}, "errorRateGuard": True},
        prompt_tokens=0,
        completion_tokens=0,
        cost_nanos=0,
        unpriced_attempts=0,
        recent_outcomes="",
    )
    usage = Usage(200, 300, "offline")

    def attempt() -> None:
        lifecycle.count_attempt(batch, charge(usage, PRICES), failed=False)
        lifecycle.tripped(batch)

    return timeit.timeit(attempt, number=repeat) / repeat * 1e6


def run(quick: bool) -> list[Figure]:
    count, baseline_count = (QUICK_COUNT, QUICK_BASELINE_COUNT) if quick else (COUNT, BASELINE_COUNT)
    guards_count, rounds = (QUICK_GUARDS_COUNT, QUICK_ROUNDS) if quick else (GUARDS_COUNT, ROUNDS)
    out: list[Figure] = []
    for kind in ("sqlite", "postgresql"):
        out += asyncio.run(measure(kind, count, baseline_count))
        out += asyncio.run(measure_guards(kind, guards_count, rounds))
    return out
