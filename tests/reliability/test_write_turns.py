"""SQLite's write lock taken in turn by the process's writers (db.py: `WriteTurns`): in the order they asked,
whichever event loop they run on, and never lost by a writer that stops waiting."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import text

from livebatch.db import Database, WriteTurns, write_turns

_T = TypeVar("_T")


class OtherLoop:
    """An event loop on a thread of its own, as the embedded worker's writer runs (uow.py: `OffLoop`)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def run(self, work: Coroutine[Any, Any, _T]) -> _T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self.loop))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def other() -> Iterator[OtherLoop]:
    loop = OtherLoop()
    yield loop
    loop.close()


async def _queued(turns: WriteTurns, n: int) -> None:
    """Until `n` writers wait for their turn (from any thread), 5 s at most."""
    async with asyncio.timeout(5):
        while len(turns._queue) < n:
            await asyncio.sleep(0.001)


async def test_writers_on_two_loops_get_their_turns_in_the_order_they_asked(other: OtherLoop) -> None:
    turns = WriteTurns()
    order: list[str] = []
    await turns.take(1)  # held here, while three ask: from this loop, the other, this one again

    async def writer(name: str) -> None:
        await turns.take(5)
        order.append(name)
        turns.give()

    first = asyncio.ensure_future(writer("here 1"))
    await _queued(turns, 1)
    second = asyncio.ensure_future(other.run(writer("there")))
    await _queued(turns, 2)  # the other loop's writer joins the line from its own thread
    third = asyncio.ensure_future(writer("here 2"))
    await _queued(turns, 3)
    turns.give()
    await asyncio.gather(first, second, third)
    assert order == ["here 1", "there", "here 2"]
    assert not turns._taken, "free once the last one is done"


async def test_a_writer_that_stops_waiting_leaves_the_line_and_the_turn_goes_on() -> None:
    turns = WriteTurns()
    await turns.take(1)
    quitter = asyncio.ensure_future(turns.take(5))
    patient = asyncio.ensure_future(turns.take(5))
    await _queued(turns, 2)
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    turns.give()
    await asyncio.wait_for(patient, 5)  # the next one in line has it
    turns.give()
    assert not turns._taken and not turns._queue


async def test_a_writer_cancelled_as_its_turn_came_passes_it_on() -> None:
    turns = WriteTurns()
    await turns.take(1)
    handed = asyncio.ensure_future(turns.take(5))
    after = asyncio.ensure_future(turns.take(5))
    await _queued(turns, 2)
    turns.give()  # handed to the first waiter, which is cancelled before it runs again
    handed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handed
    await asyncio.wait_for(after, 5)
    turns.give()
    assert not turns._taken


async def test_a_writer_that_waits_too_long_is_told_so_as_sqlite_would() -> None:
    turns = WriteTurns()
    await turns.take(1)
    with pytest.raises(TimeoutError):
        await turns.take(0.05)
    assert not turns._queue, "it left the line"
    turns.give()
    await asyncio.wait_for(turns.take(1), 1)  # and the lock was not lost


async def test_a_write_waits_for_the_turn_of_a_transaction_open_on_another_loop(
    other: OtherLoop, tmp_path: Path
) -> None:
    """Two engines on one file (the app's and the worker's writer) share the turns: a write on this loop
    begins only once the other loop's transaction has ended, and without SQLite's polling."""
    path = tmp_path / "turns.db"
    url = f"sqlite+aiosqlite:///{path}"
    here, there = Database(url, pool_size=1, max_overflow=0), Database(url, pool_size=1, max_overflow=0)
    assert write_turns(path) is write_turns(tmp_path / "." / "turns.db")
    holding = asyncio.Event()
    release = threading.Event()
    loop = asyncio.get_running_loop()
    try:
        async with here.session() as session:
            await session.execute(text("CREATE TABLE t (n INTEGER)"))
            await session.commit()

        async def hold_then_commit() -> None:
            async with there.session() as session:
                await session.execute(text("INSERT INTO t VALUES (1)"))
                loop.call_soon_threadsafe(holding.set)  # open, and holding the turn
                await asyncio.to_thread(release.wait, 5)
                await session.commit()

        holder = asyncio.ensure_future(other.run(hold_then_commit()))
        await asyncio.wait_for(holding.wait(), 5)
        turns = write_turns(path)

        async def write_here() -> list[int]:
            async with here.session() as session:
                await session.execute(text("INSERT INTO t VALUES (2)"))
                await session.commit()
                return list((await session.execute(text("SELECT n FROM t ORDER BY rowid"))).scalars())

        writer = asyncio.ensure_future(write_here())
        await _queued(turns, 1)
        assert not writer.done()
        release.set()
        assert await asyncio.wait_for(writer, 5) == [1, 2]
        await holder
        assert not turns._taken and not turns._queue
    finally:
        release.set()
        await here.dispose()
        await other.run(there.dispose())
