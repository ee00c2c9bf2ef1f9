"""A stream writes what it has in few writes: notices already queued go out together, a replayed page at once."""

from __future__ import annotations

from livebatch.batches import service, stream
from livebatch.batches.schemas import BatchCreate
from livebatch.events.log import LoggedEvent, Notice
from livebatch.runtime import Runtime
from tests.conftest import Person, SettingsFactory, batch_body


async def test_notices_queued_while_a_stream_was_busy_go_out_in_one_write(
    make_settings: SettingsFactory, people: dict[str, Person]
) -> None:
    rt = Runtime(make_settings(progress_interval_ms=60_000), worker=False)  # the test plays the worker
    await rt.start()
    try:
        async with rt.db.session() as session:
            spec = BatchCreate.model_validate(batch_body(3))
            batch = await service.create_batch(
                session, spec, owner=people["faculty"].user, limits=rt.limits, now=rt.now()
            )
            await session.commit()
        subscription = rt.bus.subscribe(str(batch.id))
        cursor = stream.Cursor(batch.last_seq, service.snapshot_of(batch).to_json())
        frames = stream._events(rt, batch.id, subscription, cursor)
        assert b"event: batch.progress" in await anext(frames)

        queued = [LoggedEvent.of(batch.last_seq + i, "item.started", f'{{"itemIndex":{i}}}') for i in (1, 2, 3)]
        for event in queued:
            assert subscription.offer(Notice(str(batch.id), (event,)))
        written = await anext(frames)

        assert written == b"".join(e.frame for e in queued)
        assert cursor.seq == batch.last_seq + 3
        await frames.aclose()
        subscription.close()
    finally:
        await rt.aclose()
