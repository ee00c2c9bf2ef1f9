"""The unit of work: one transaction, and what it will announce once it has committed.

Services change rows, append events to the log and say which items they dispatched; they never commit.
Whoever opened the unit of work commits it once, and only then are its events published to the bus
(the news travels with the doorbell) and its dispatched items queued for a worker. A rolled-back unit
announces nothing: its events never happened, and its items were never dispatched.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.db import Database
from livebatch.events.bus import Bus
from livebatch.events.log import LoggedEvent, Notice

logger = logging.getLogger("livebatch.uow")
_T = TypeVar("_T")


class WorkQueue(Protocol):
    """Where dispatched items go to reach a worker (Taskiq, in-process or Redis)."""

    async def enqueue(self, item_ids: Sequence[UUID]) -> None: ...


class Announcer(Protocol):
    """Where a committed unit's notices go (the bus)."""

    async def publish(self, notices: Sequence[Notice]) -> None: ...


class UnitOfWork:
    def __init__(self, session: AsyncSession, bus: Announcer, queue: WorkQueue) -> None:
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
    """Opens units of work on the writing engine. `off_loop`: item state changes (`apply`) run on a writer
    thread of their own (SQLite, embedded; see `OffLoop`)."""

    def __init__(self, db: Database, bus: Bus, queue: WorkQueue, *, off_loop: OffLoop | None = None) -> None:
        self.db = db
        self.bus = bus
        self.queue = queue
        self.off_loop = off_loop

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work; what it did is rolled back unless `commit` was called."""
        async with self.db.session() as session:
            yield UnitOfWork(session, self.bus, self.queue)

    async def apply(self, change: Callable[[UnitOfWork], Awaitable[_T]]) -> _T:
        """`change` in a unit of work of its own (it commits it, or not); its notices are published and its
        items queued here once it has committed, as `begin` would."""
        off_loop = self.off_loop
        if off_loop is None:
            async with self.begin() as uow:
                return await change(uow)
        held = _Held()

        async def there() -> _T:
            async with off_loop.db.session() as session:
                return await change(UnitOfWork(session, held, held))

        result = await off_loop.run(there())
        if held.notices:
            await self.bus.publish(held.notices)
        if held.dispatched:
            await self.queue.enqueue(held.dispatched)
        return result


class _Held:
    """A committed unit's notices and dispatched items, kept to be announced on the process's own loop."""

    def __init__(self) -> None:
        self.notices: list[Notice] = []
        self.dispatched: list[UUID] = []

    async def publish(self, notices: Sequence[Notice]) -> None:
        self.notices.extend(notices)

    async def enqueue(self, item_ids: Sequence[UUID]) -> None:
        self.dispatched.extend(item_ids)


class OffLoop:
    """An event loop on a thread of its own, with its own engine, for item state changes on SQLite.

    SQLite has one write lock, taken at `BEGIN IMMEDIATE` and held to the commit; aiosqlite hands each
    statement's result back through the event loop. On the process's own loop, a transaction therefore held
    the lock across every turn that loop spent elsewhere: writing to a thousand streams, it was the viewers
    who slowed the work (bench/fanout.py). Here the loop does nothing else, so a transaction holds the lock
    for the time of its statements (and of the interpreter lock, handed over every few milliseconds at
    most, whatever the other thread does)."""

    def __init__(self, url: str) -> None:
        # Its transactions take turns for the write lock anyway: two connections (one writing, one ready)
        # hand it over at once, where more would wait in SQLite's busy handler, which sleeps.
        self.db = Database(url, pool_size=2, max_overflow=0)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="livebatch-writer", daemon=True)
        self._thread.start()
        self._pending: set[asyncio.Future[Any]] = set()

    async def run(self, work: Coroutine[Any, Any, _T]) -> _T:
        """`work` on the writer's loop, to its end: cancelled here (the process stopping), it still commits
        or rolls back there, as a connection cancelled in the middle of a statement is not one aiosqlite
        can close (batches/stream.py: `_uncancelled`)."""
        done = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))
        self._pending.add(done)
        done.add_done_callback(self._pending.discard)
        return await asyncio.shield(done)

    async def aclose(self) -> None:
        """After the work has stopped: waits for the transactions still running (5 s at most), then closes."""
        if not self._thread.is_alive():
            return
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=5)
        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.db.dispose(), self._loop))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, 5)
            if not self._thread.is_alive() and not self._pending:
                self._loop.close()
