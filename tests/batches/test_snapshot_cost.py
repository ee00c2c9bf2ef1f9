"""A snapshot is read from the batch's counters: the same work for 10 items as for 100 000."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy import case, delete, event, func, insert, literal, select, update

from livebatch.batches import item_repository, reads, service
from livebatch.batches.events import BatchProgressSnapshot
from livebatch.batches.lifecycle import snapshot_of
from livebatch.batches.models import Batch, Item
from livebatch.batches.service import Limits
from livebatch.clock import utcnow
from livebatch.db import Base, Database
from livebatch.users.models import User
from tests.batches.conftest import spec
from tests.checks import Unqueued
from tests.conftest import Person


@dataclass
class Cost:
    statements: list[str] = field(default_factory=list)
    rows_loaded: int = 0


@contextmanager
def measured(db: Database) -> Iterator[Cost]:
    """Every SQL statement sent and every ORM row loaded while the block runs."""
    cost = Cost()

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        cost.statements.append(statement)

    def on_load(target: Any, context: Any) -> None:
        cost.rows_loaded += 1

    event.listen(db.engine.sync_engine, "before_cursor_execute", on_execute)
    event.listen(Base, "load", on_load, propagate=True)
    try:
        yield cost
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", on_execute)
        event.remove(Base, "load", on_load)


async def _batch(db: Database, owner: User, count: int, *, done: int) -> UUID:
    """A running batch of `count` items of which `done` completed (rows and counters, as workers leave them).

    The item rows are made by the database itself (INSERT ... SELECT from a recursive CTE): 100 000 rows
    through the ORM take seconds, and how they were made does not matter to a snapshot."""
    async with Unqueued(db).begin() as uow:
        batch = await service.create_batch(uow, spec(1), owner=owner, limits=Limits(), now=utcnow())
        await uow.session.execute(delete(Item).where(Item.batch_id == batch.id))
        numbers = select(literal(0).label("n")).cte("numbers", recursive=True)
        numbers = numbers.union_all(select(numbers.c.n + 1).where(numbers.c.n < count - 1))
        random_id = (
            func.gen_random_uuid()
            if db.engine.dialect.name == "postgresql"
            else func.lower(func.hex(func.randomblob(16)))
        )
        rows = select(
            random_id,
            literal(batch.id, Item.batch_id.type),
            numbers.c.n,
            literal("medium"),
            case((numbers.c.n < done, "completed"), else_="pending"),
            literal(0),
            literal(utcnow(), Item.next_attempt_at.type),
            literal(False),
        )
        columns = ["id", "batch_id", "idx", "difficulty", "status", "attempts", "next_attempt_at", "will_retry"]
        await uow.session.execute(insert(Item).from_select(columns, rows))
        await uow.session.execute(
            update(Batch).where(Batch.id == batch.id).values(status="running", total_items=count, completed_items=done)
        )
        await uow.commit()
        statuses = await item_repository.count_items_by_status(uow.session, batch.id)
    assert statuses == {"completed": done, "pending": count - done}
    return batch.id


async def _snapshot(db: Database, batch_id: UUID, owner: User) -> BatchProgressSnapshot:
    """What the GET and a stream's connect do: read the owned batch, derive its snapshot."""
    async with db.read_session() as session:
        batch = await reads.get_owned_batch(session, batch_id, owner)
        return snapshot_of(batch)


async def test_a_snapshot_costs_the_same_for_10_and_100_000_items(db: Database, people: dict[str, Person]) -> None:
    owner = people["faculty"].user
    small = await _batch(db, owner, 10, done=6)
    large = await _batch(db, owner, 100_000, done=60_000)

    with measured(db) as small_cost:
        small_snapshot = await _snapshot(db, small, owner)
    with measured(db) as large_cost:
        large_snapshot = await _snapshot(db, large, owner)

    assert (small_snapshot.percentage, small_snapshot.pending_items) == (60, 4)
    assert (large_snapshot.percentage, large_snapshot.pending_items) == (60, 40_000)
    assert large_cost.statements == small_cost.statements
    assert large_cost.rows_loaded == small_cost.rows_loaded == 1  # the batch row, nothing else
    assert not [s for s in large_cost.statements if "batch_items" in s or "batch_events" in s]
