"""A stream writes what it has in few writes: notices already queued go out together, a replayed page at once."""

from __future__ import annotations

import asyncio

from livebatch.batches import service, stream
from livebatch.batches.lifecycle import snapshot_of
from livebatch.batches.schemas import BatchCreate
from livebatch.events.bus import LocalBus
from livebatch.events.log import LoggedEvent, Notice
from livebatch.events.redis_bus import RedisBus
from livebatch.parts import Parts
from tests.conftest import Person, SettingsFactory, batch_body


def _streams(parts: Parts) -> stream.BatchStreams:
    return stream.BatchStreams(db=parts.db, bus=parts.bus, metrics=parts.metrics, settings=parts.settings)


def _local(parts: Parts) -> LocalBus:
    """This process's fan-out, handed notices directly (as the Redis listener does), in the test's order."""
    return parts.bus.local if isinstance(parts.bus, RedisBus) else parts.bus  # type: ignore[return-value]


async def _live(streams: stream.BatchStreams, batch_id: object) -> None:
    """Until the stream is past its replay, in the live fan-out: notices from then on reach it."""
    async with asyncio.timeout(10):
        while streams.following(batch_id) == 0:  # type: ignore[arg-type]
            await asyncio.sleep(0.005)


async def test_notices_queued_while_a_stream_was_busy_go_out_in_one_write(
    make_settings: SettingsFactory, people: dict[str, Person]
) -> None:
    rt = Parts(make_settings(progress_interval_ms=60_000), worker=False)  # the test plays the worker
    await rt.start()
    try:
        async with rt.transactions.begin() as uow:
            spec = BatchCreate.model_validate(batch_body(3))
            batch = await service.create_batch(uow, spec, owner=people["faculty"].user, limits=rt.limits, now=rt.now())
            await uow.commit()
        cursor = stream.Cursor(batch.last_seq, snapshot_of(batch).to_json())
        streams = _streams(rt)
        frames = streams.writes(batch.id, cursor)
        assert b"event: batch.progress" in await anext(frames)
        await _live(streams, batch.id)

        # Three notices within one flush tick: one write.
        queued = [LoggedEvent.of(batch.last_seq + i, "item.started", f'{{"itemIndex":{i}}}') for i in (1, 2, 3)]
        for event in queued:
            _local(rt).deliver(Notice(str(batch.id), (event,)))
        written = await anext(frames)

        assert written == b"".join(e.frame for e in queued)
        await frames.aclose()
        assert streams.following(batch.id) == 0
    finally:
        await rt.aclose()


async def test_a_due_snapshot_goes_out_with_the_next_item_event_or_alone_after_another_interval(
    make_settings: SettingsFactory, people: dict[str, Person]
) -> None:
    interval_ms = 500  # wide enough for a loaded machine: the first item event must come within it
    rt = Parts(make_settings(progress_interval_ms=interval_ms), worker=False)  # the test plays the worker
    await rt.start()
    try:
        async with rt.transactions.begin() as uow:
            spec = BatchCreate.model_validate(batch_body(3))
            batch = await service.create_batch(uow, spec, owner=people["faculty"].user, limits=rt.limits, now=rt.now())
            await uow.commit()
        cursor = stream.Cursor(batch.last_seq, snapshot_of(batch).to_json())
        streams = _streams(rt)
        frames = streams.writes(batch.id, cursor)
        await anext(frames)  # the snapshot on connect
        await _live(streams, batch.id)
        seq = batch.last_seq
        bus = _local(rt)

        def notice(i: int) -> Notice:
            event = LoggedEvent.of(seq + i, "item.started", f'{{"itemIndex":{i}}}')
            return Notice(str(batch.id), (event,), state=f'{{"completedItems":{i}}}')

        # Within the interval: the item event goes alone, and the snapshot it changed waits.
        bus.deliver(notice(1))
        assert b"event: batch.progress" not in await anext(frames)
        # Once the interval has passed, the next item event carries the snapshot in the same write.
        await asyncio.sleep(interval_ms / 1000)
        bus.deliver(notice(2))
        written = await anext(frames)
        assert written.count(b"event: ") == 2
        assert b"event: item.started" in written and b'"completedItems":2' in written
        # With no event to carry it, a changed snapshot goes alone, two intervals after the last one.
        bus.deliver(notice(3))
        await anext(frames)
        loop = asyncio.get_running_loop()
        waited = loop.time()
        alone = await anext(frames)
        waited = loop.time() - waited
        assert alone.count(b"event: ") == 1 and b"event: batch.progress" in alone and b'"completedItems":3' in alone
        assert 1.5 * interval_ms / 1000 < waited < 5 * interval_ms / 1000  # not after one interval, as it was
        await frames.aclose()
    finally:
        await rt.aclose()
