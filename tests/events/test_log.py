"""The event log: read back in seq order from any point, never past a hole."""

from __future__ import annotations

from uuid import UUID

from livebatch.batches import service
from livebatch.batches.service import Limits
from livebatch.clock import utcnow
from livebatch.db import Database
from livebatch.events import log
from tests.batches.conftest import spec
from tests.checks import Unqueued
from tests.conftest import Person


async def _batch(db: Database, person: Person) -> UUID:
    async with Unqueued(db).begin() as uow:
        batch = await service.create_batch(uow, spec(1), owner=person.user, limits=Limits(), now=utcnow())
        await uow.commit()
    return batch.id


async def test_events_after_reads_in_order_from_any_point_and_stops_at_a_hole(
    db: Database, people: dict[str, Person]
) -> None:
    batch_id = await _batch(db, people["faculty"])
    async with Unqueued(db).begin() as uow:
        for seq in (1, 2, 3, 5, 6):  # 4 not committed yet (a writer still in its transaction)
            await log.append(uow.session, batch_id, seq, "item.started", f'{{"n":{seq}}}', at=utcnow())
        await uow.commit()
    async with db.read_session() as session:
        assert [e.seq for e in await log.events_after(session, batch_id, 0, limit=100)] == [1, 2, 3]
        assert [e.seq for e in await log.events_after(session, batch_id, 1, limit=1)] == [2]
        assert [e.seq for e in await log.events_after(session, batch_id, 4, limit=100)] == [5, 6]
        assert await log.events_after(session, batch_id, 6, limit=100) == []
        (first,) = await log.events_after(session, batch_id, 0, limit=1)
        assert first.frame == b'id: 1\nevent: item.started\ndata: {"n":1}\n\n'
        assert await log.count_events(session, batch_id) == 5
