"""The event log: every item and batch event, with its per-batch sequence number.

The log is the source of truth for streams. Writers append inside the transaction that changes the state
the event describes; the caller passes the `seq` it took from the batch row in that same transaction,
which keeps seqs gap-free and visible in order (NOTES.md: a SEQUENCE would let readers skip events).
Appended events wait in `session.info` until the boundary commits and hands them to the bus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from sqlalchemy import ForeignKey, String, Text, func, insert, select
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


_APPENDED = "livebatch.appended"
_STATE = "livebatch.state"


async def append(
    session: AsyncSession, batch_id: UUID, seq: int, name: str, payload: str, *, at: datetime
) -> LoggedEvent:
    # A Core insert: no ORM bookkeeping (nor autoflush) for the statement every event runs.
    await session.execute(insert(_TABLE).values(batch_id=batch_id, seq=seq, name=name, payload=payload, created_at=at))
    event = LoggedEvent.of(seq, name, payload)
    session.info.setdefault(_APPENDED, {}).setdefault(str(batch_id), []).append(event)
    return event


def attach_state(session: AsyncSession, batch_id: UUID, state: str) -> None:
    """Records the topic's derived state after this transaction, to travel with its notice."""
    session.info.setdefault(_STATE, {})[str(batch_id)] = state


def take_notices(session: AsyncSession) -> list[Notice]:
    """The notices of everything appended since the last call (call it after a successful commit)."""
    appended: dict[str, list[LoggedEvent]] = session.info.pop(_APPENDED, {})
    states: dict[str, str] = session.info.pop(_STATE, {})
    topics = appended.keys() | states.keys()
    return [Notice(t, tuple(appended.get(t, ())), states.get(t)) for t in sorted(topics)]


def discard_notices(session: AsyncSession) -> None:
    """Forgets what a rolled-back transaction appended."""
    session.info.pop(_APPENDED, None)
    session.info.pop(_STATE, None)


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
