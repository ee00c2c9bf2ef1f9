"""Notices from several workers reach an API instance in any order (each worker publishes on its own
connection). A stream must still never show a snapshot older than the events it has already sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import select

from livebatch.batches import service, stream, work
from livebatch.batches.events import LOGGED_EVENT_NAMES
from livebatch.batches.lifecycle import snapshot_of
from livebatch.batches.models import Item
from livebatch.batches.schemas import BatchCreate
from livebatch.batches.work import Claim
from livebatch.events.bus import LocalBus
from livebatch.events.log import Notice
from livebatch.events.redis_bus import RedisBus, bus_key
from livebatch.generation.offline import compose
from livebatch.generation.providers import ItemRequest
from livebatch.parts import Parts
from livebatch.uow import Transactions, UnitOfWork
from tests.checks import Unqueued
from tests.conftest import Person, SettingsFactory, batch_body

Sent = list[tuple[str, dict[str, Any]]]


async def test_a_late_notice_never_turns_a_stream_snapshot_back(
    make_settings: SettingsFactory, people: dict[str, Person]
) -> None:
    settings = make_settings(progress_interval_ms=0, offline_latency_ms=0, batch_concurrency=4)
    rt = Parts(settings, worker=False)  # an API instance: it streams, the test plays the workers
    await rt.start()
    workers = RedisBus(
        settings.redis_url or "",
        prefix=settings.redis_prefix,
        key=bus_key(settings.effective_jwt_secret),
        names=LOGGED_EVENT_NAMES,
    )
    await workers.start()
    sent: Sent = []
    try:
        async with Unqueued(rt.db).begin() as uow:
            spec = BatchCreate.model_validate(batch_body(4))
            batch = await service.create_batch(uow, spec, owner=people["faculty"].user, limits=rt.limits, now=rt.now())
            await uow.commit()
            query = select(Item.id).where(Item.batch_id == batch.id).order_by(Item.idx)
            item_ids = list((await uow.session.execute(query)).scalars())
        streams = stream.BatchStreams(db=rt.db, bus=rt.bus, metrics=rt.metrics, settings=rt.settings)
        frames = streams.writes(batch.id, stream.Cursor(0, snapshot_of(batch).to_json()))
        collector = asyncio.create_task(_collect(frames, sent))

        claims: list[Claim] = []
        for item_id in item_ids:

            async def claim_it(uow: UnitOfWork, item_id: UUID = item_id) -> Any:
                return await work.claim_item(uow, item_id, now=rt.now(), lease=timedelta(seconds=30))

            notice, claim = await _commit(rt, str(batch.id), claim_it)
            await workers.publish([notice])
            claims.append(claim)
        await _until(lambda: _count(sent, "item.started") == 4)  # the stream is past its catch-up, live

        async def complete(claim: Claim) -> Notice:
            request = ItemRequest(
                batch.id, claim.item_index, claim.attempt, "c", "single-best-answer", claim.difficulty
            )
            question = compose(request)
            notice, _ = await _commit(
                rt, str(batch.id), lambda uow: work.complete_item(uow, claim, question, now=rt.now())
            )
            return notice

        done = [await complete(claim) for claim in claims[:3]]
        # Items 0 and 2 reach the stream (1 is caught up from the log); item 1's own notice, from a slower
        # worker, arrives only after them.
        await workers.publish([done[0], done[2]])
        await _until(lambda: _count(sent, "item.completed") == 3)
        await workers.publish([done[1]])
        await workers.publish([await complete(claims[3])])  # the last item, and the end
        async with asyncio.timeout(10):
            await collector
    finally:
        await workers.aclose()
        await rt.aclose()

    completed_sent, shown = 0, []
    for name, data in sent:
        if name == "item.completed":
            completed_sent += 1
        elif name == "batch.progress":
            shown.append(data["completedItems"])
            assert data["completedItems"] >= completed_sent, f"a snapshot behind the events already sent: {shown}"
    assert shown == sorted(shown), f"the count went backwards: {shown}"
    assert sent[-1][0] == "batch.complete" and completed_sent == 4


async def _commit(rt: Parts, topic: str, change: Callable[[UnitOfWork], Awaitable[Any]]) -> tuple[Notice, Any]:
    """Runs a service change and commits it on a bus of its own; returns its notice for the test to send."""
    held = LocalBus()
    with held.subscribe(topic) as subscription:
        async with Transactions(rt.db, held, Unqueued(rt.db)).begin() as uow:
            result = await change(uow)
            await uow.commit()
        notice = subscription.get_nowait()
    assert isinstance(notice, Notice)
    return notice, result


async def _collect(frames: AsyncGenerator[bytes, None], sent: Sent) -> None:
    async for chunk in frames:
        for frame in chunk.decode().strip().split("\n\n"):  # a chunk may hold several frames, one write
            fields = dict(line.split(": ", 1) for line in frame.splitlines())
            sent.append((fields["event"], json.loads(fields["data"])))


def _count(sent: Sent, name: str) -> int:
    return sum(1 for event, _ in sent if event == name)


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.01)
