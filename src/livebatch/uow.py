"""The unit of work: one transaction, and what it will announce once it has committed.

Services change rows, append events to the log and say which items they dispatched; they never commit.
Whoever opened the unit of work commits it once, and only then are its events published to the bus
(the news travels with the doorbell) and its dispatched items queued for a worker. A rolled-back unit
announces nothing: its events never happened, and its items were never dispatched.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Protocol
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.db import Database
from livebatch.events.bus import Bus
from livebatch.events.log import LoggedEvent, Notice

logger = logging.getLogger("livebatch.uow")


class WorkQueue(Protocol):
    """Where dispatched items go to reach a worker (Taskiq, in-process or Redis)."""

    async def enqueue(self, item_ids: Sequence[UUID]) -> None: ...


class UnitOfWork:
    def __init__(self, session: AsyncSession, bus: Bus, queue: WorkQueue) -> None:
        self.session = session
        self._bus = bus
        self._queue = queue
        self._events: dict[str, list[LoggedEvent]] = {}
        self._states: dict[str, str] = {}
        self._dispatched: list[UUID] = []

    def announce(self, topic: str, event: LoggedEvent, *, state: str | None = None) -> None:
        """Publishes `event` (appended to the log in this transaction) after the commit, with the topic's
        derived state as of this transaction."""
        self._events.setdefault(topic, []).append(event)
        if state is not None:
            self._states[topic] = state

    def dispatch(self, item_ids: Sequence[UUID]) -> None:
        """Queues these items (marked dispatched in this transaction) after the commit."""
        self._dispatched.extend(item_ids)

    async def commit(self) -> None:
        """Commits once; then publishes the events and queues the items the transaction dispatched."""
        try:
            await self.session.commit()
        except BaseException:
            self._forget()
            raise
        topics = sorted(self._events.keys() | self._states.keys())
        notices = [Notice(t, tuple(self._events.get(t, ())), self._states.get(t)) for t in topics]
        dispatched = self._dispatched
        self._forget()
        if notices:
            await self._bus.publish(notices)
        if dispatched:
            await self._queue.enqueue(dispatched)

    async def rollback(self) -> None:
        self._forget()
        await self.session.rollback()

    def _forget(self) -> None:
        self._events, self._states, self._dispatched = {}, {}, []


class Transactions:
    """Opens units of work on the writing engine."""

    def __init__(self, db: Database, bus: Bus, queue: WorkQueue) -> None:
        self.db = db
        self.bus = bus
        self.queue = queue

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work; what it did is rolled back unless `commit` was called."""
        async with self.db.session() as session:
            yield UnitOfWork(session, self.bus, self.queue)
