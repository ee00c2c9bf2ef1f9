"""A unit of work announces what it did only once it has committed, and a rollback forgets it."""

from __future__ import annotations

from uuid import uuid4

from livebatch.clock import utcnow
from livebatch.db import Database
from livebatch.events import log
from livebatch.events.bus import LocalBus
from livebatch.events.log import Notice
from livebatch.uow import Transactions
from tests.checks import Unqueued
from tests.conftest import Person
from tests.events.test_log import _batch


async def test_events_and_dispatches_wait_for_the_commit_and_a_rollback_forgets_them(
    db: Database, people: dict[str, Person]
) -> None:
    batch_id = await _batch(db, people["faculty"])
    topic, item_id = str(batch_id), uuid4()
    bus, queue = LocalBus(), Unqueued(db)
    with bus.subscribe(topic) as subscription:
        async with Transactions(db, bus, queue).begin() as uow:
            started = await log.append(uow.session, batch_id, 1, "item.started", "{}", at=utcnow())
            uow.announce(topic, started, state='{"state":1}')
            uow.dispatch([item_id])
            await uow.rollback()
            assert subscription.get_nowait() is None and queue.dispatched == []

            started = await log.append(uow.session, batch_id, 1, "item.started", "{}", at=utcnow())
            completed = await log.append(uow.session, batch_id, 2, "item.completed", "{}", at=utcnow())
            uow.announce(topic, started)
            uow.announce(topic, completed, state='{"state":2}')
            uow.dispatch([item_id])
            assert subscription.get_nowait() is None and queue.dispatched == []  # not before the commit
            await uow.commit()

        notice = subscription.get_nowait()
        assert isinstance(notice, Notice)
        assert (notice.topic, [e.seq for e in notice.events], notice.state) == (topic, [1, 2], '{"state":2}')
        assert queue.dispatched == [item_id]
        assert subscription.get_nowait() is None
