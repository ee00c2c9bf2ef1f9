"""Every item runs a claim and a completion: their statements are the pipeline's cost per item
(bench/pipeline.py), so their number is pinned here."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event, select

from livebatch.batches import service, work
from livebatch.batches.models import Item
from livebatch.batches.service import Limits
from livebatch.batches.work import Claim
from livebatch.clock import utcnow
from livebatch.db import Database
from livebatch.generation.offline import compose
from livebatch.generation.providers import ItemRequest
from tests.batches.conftest import spec
from tests.checks import Unqueued
from tests.conftest import Person


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The SQL statements sent while the block runs, without the transactions' BEGIN."""
    sent: list[str] = []

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.startswith("BEGIN"):
            sent.append(statement.split()[0])

    event.listen(db.engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        yield sent
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", on_execute)


async def test_an_item_costs_five_statements_to_claim_and_six_to_complete(
    db: Database, people: dict[str, Person]
) -> None:
    owner = people["faculty"].user
    async with Unqueued(db).begin() as uow:
        batch = await service.create_batch(uow, spec(6), owner=owner, limits=Limits(concurrency=2), now=utcnow())
        await uow.commit()
        first = (
            await uow.session.execute(select(Item.id).where(Item.batch_id == batch.id, Item.idx == 0))
        ).scalar_one()

    with statements(db) as claiming:
        async with Unqueued(db).begin() as uow:
            claim = await work.claim_item(uow, first, now=utcnow(), lease=timedelta(seconds=30))
            await uow.commit()
    assert isinstance(claim, Claim)
    # The item with its course's title, the batch's lock, the claim, the event, the batch's counters.
    assert Counter(claiming) == {"SELECT": 2, "UPDATE": 2, "INSERT": 1}

    request = ItemRequest(batch.id, claim.item_index, claim.attempt, claim.course_title, "single-best-answer", "easy")
    with statements(db) as completing:
        async with Unqueued(db).begin() as uow:
            assert await work.complete_item(uow, claim, compose(request), now=utcnow())
            await uow.commit()
    # The batch's lock, the item, the generated item, the event, the next dispatch, the batch's counters.
    assert Counter(completing) == {"SELECT": 1, "UPDATE": 3, "INSERT": 2}

    async with db.read_session() as session:
        items = {i.idx: i for i in (await session.execute(select(Item).where(Item.batch_id == batch.id))).scalars()}
    assert items[0].status == "completed"
    assert [idx for idx, i in sorted(items.items()) if i.dispatched_at is not None] == [1, 2]  # the window refilled
    assert claim.course_title == "Cardiovascular Pathology"
