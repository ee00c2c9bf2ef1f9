"""Every item runs a claim and a completion: their statements are the pipeline's cost per item
(bench/pipeline.py), so their number is pinned here."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event, select

from livebatch.batches import service
from livebatch.batches.models import Item
from livebatch.batches.service import Claim, Limits
from livebatch.clock import utcnow
from livebatch.db import Database
from livebatch.generation.offline import compose
from livebatch.generation.providers import ItemRequest
from tests.batches.conftest import spec
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
    async with db.session() as session:
        batch = await service.create_batch(session, spec(6), owner=owner, limits=Limits(concurrency=2), now=utcnow())
        await session.commit()
        first = (await session.execute(select(Item.id).where(Item.batch_id == batch.id, Item.idx == 0))).scalar_one()

    with statements(db) as claiming:
        async with db.session() as session:
            claim = await service.claim_item(session, first, now=utcnow(), lease=timedelta(seconds=30))
            await session.commit()
    assert isinstance(claim, Claim)
    # The item with its course's title, the batch's lock, the claim, the event, the batch's counters.
    assert Counter(claiming) == {"SELECT": 2, "UPDATE": 2, "INSERT": 1}

    request = ItemRequest(batch.id, claim.item_index, claim.attempt, claim.course_title, "single-best-answer", "easy")
    with statements(db) as completing:
        async with db.session() as session:
            assert await service.complete_item(session, claim, compose(request), now=utcnow())
            await session.commit()
    # The batch's lock, the item, the generated item, the event, the next dispatch, the batch's counters.
    assert Counter(completing) == {"SELECT": 1, "UPDATE": 3, "INSERT": 2}

    async with db.read_session() as session:
        items = {i.idx: i for i in (await session.execute(select(Item).where(Item.batch_id == batch.id))).scalars()}
    assert items[0].status == "completed"
    assert [idx for idx, i in sorted(items.items()) if i.dispatched_at is not None] == [1, 2]  # the window refilled
    assert claim.course_title == "Cardiovascular Pathology"
