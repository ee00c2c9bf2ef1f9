"""The event log: every item and batch event, with its per-batch sequence number.

The log is the source of truth for streams. Writers append inside the transaction that changes the state
the event describes; the caller passes the `seq` it took from the batch row in that same transaction,
which keeps seqs gap-free and visible in order (a SEQUENCE would let readers skip events for good, and
leave holes on rollback: docs/stack-notes.md). The unit of work (uow.py) publishes what was appended once
its transaction has committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from sqlalchemy import ForeignKey, String, Text, delete, func, insert, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from livebatch.db import Base
from livebatch.events.sse import frame


class LogEntry(Base):
    __tablename__ = "batch_events"

    batch_id: Mapped[UUID] = mapped_column(ForeignKey("batch_jobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)  # JSON text, sent as is
    created_at: Mapped[datetime]


_TABLE = Base.metadata.tables[LogEntry.__tablename__]


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    seq: int
    name: str
    data: str
    frame: bytes = field(repr=False, compare=False)

    @classmethod
    def of(cls, seq: int, name: str, data: str) -> LoggedEvent:
        return cls(seq, name, data, frame(name, data, event_id=seq))


@dataclass(frozen=True, slots=True)
class Notice:
    """What one commit did to one topic: its new events, in order, and the topic's state after them."""

    topic: str
    events: tuple[LoggedEvent, ...]
    state: str | None = None


async def append(
    session: AsyncSession, batch_id: UUID, seq: int, name: str, payload: str, *, at: datetime
) -> LoggedEvent:
    # A Core insert: no ORM bookkeeping (nor autoflush) for the statement every event runs.
    await session.execute(insert(_TABLE).values(batch_id=batch_id, seq=seq, name=name, payload=payload, created_at=at))
    return LoggedEvent.of(seq, name, payload)


async def events_after(session: AsyncSession, batch_id: UUID, after: int, *, limit: int) -> list[LoggedEvent]:
    stmt = (
        select(LogEntry.seq, LogEntry.name, LogEntry.payload)
        .where(LogEntry.batch_id == batch_id, LogEntry.seq > after)
        .order_by(LogEntry.seq)
        .limit(limit)
    )
    rows = (await session.execute(stmt)).all()
    events: list[LoggedEvent] = []
    expected = after + 1
    for seq, name, payload in rows:
        if seq != expected:
            break  # never hand out a hole: a later read will see the missing seq once it is committed
        events.append(LoggedEvent.of(seq, name, payload))
        expected += 1
    return events


async def count_events(session: AsyncSession, batch_id: UUID, name: str | None = None) -> int:
    stmt = select(func.count()).select_from(LogEntry).where(LogEntry.batch_id == batch_id)
    if name is not None:
        stmt = stmt.where(LogEntry.name == name)
    return int((await session.execute(stmt)).scalar_one())


async def delete_through(session: AsyncSession, batch_id: UUID, seq: int) -> int:
    """Deletes the batch's events up to and including `seq` (pruning an old log); how many."""
    result = await session.execute(delete(LogEntry).where(LogEntry.batch_id == batch_id, LogEntry.seq <= seq))
    assert isinstance(result, CursorResult)
    return result.rowcount
