"""The database held or away in the middle of a batch: SQLite locked by another process for seconds
(embedded), PostgreSQL unreachable for seconds (scaled out, through a TCP proxy of the test's own in front
of the shared server). The pipeline waits or retries, and the batch ends with nothing lost or doubled."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from uuid import UUID

import pytest

from livebatch.db import Database
from livebatch.parts import Parts
from tests.batches.conftest import PartsFactory, start_batch
from tests.checks import assert_consistent, event_log, load_batch, wait_for_status
from tests.conftest import Person
from tests.scaled.conftest import TcpProxy

ITEMS = 40
HOLD_S = 3.0
OUTAGE_S = 2.0

# Takes SQLite's write lock the way another writer would (BEGIN IMMEDIATE), says so, holds it, lets go.
LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


async def _wait_completed(rt: Parts, batch_id: UUID, count: int) -> None:
    async with asyncio.timeout(60):
        while (await load_batch(rt.db, batch_id)).completed_items < count:
            await asyncio.sleep(0.02)


@pytest.mark.usefixtures("embedded_only")
async def test_sqlite_locked_by_another_process_makes_the_pipeline_wait_and_lose_nothing(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    rt = await open_parts(offline_latency_ms=20, batch_concurrency=4)
    path = rt.settings.effective_database_url.removeprefix("sqlite+aiosqlite:///")
    batch_id = await start_batch(rt, people["faculty"], ITEMS)
    await _wait_completed(rt, batch_id, ITEMS // 4)

    with subprocess.Popen(
        [sys.executable, "-c", LOCKER, path, str(HOLD_S)], stdout=subprocess.PIPE, text=True
    ) as locker:
        assert locker.stdout is not None
        assert await asyncio.to_thread(locker.stdout.readline) == "locked\n"
        locked_at = time.monotonic()
        held = await load_batch(rt.db, batch_id)  # reads go on: WAL readers never wait for the writer
        await asyncio.sleep(HOLD_S / 2)
        assert (await load_batch(rt.db, batch_id)).last_seq == held.last_seq, "a write got past the lock"
        assert await asyncio.to_thread(locker.wait, 30) == 0
        released_in = time.monotonic() - locked_at
    batch = await wait_for_status(rt, batch_id)
    finished_in = time.monotonic() - locked_at - released_in

    assert (batch.status, batch.completed_items) == ("completed", ITEMS)
    await assert_consistent(rt.db, batch_id)
    assert [p for _, name, p in await event_log(rt.db, batch_id) if name == "item.failed"] == []
    print(
        f"\nSQLite locked {released_in:.1f}s at {held.completed_items}/{ITEMS}: writes waited, then the batch "
        f"finished {finished_in:.1f}s after the lock was released, no attempt failed"
    )


@pytest.mark.usefixtures("scaled_only")
async def test_postgresql_away_for_seconds_mid_batch_loses_nothing(
    open_parts: PartsFactory,
    pg_proxy: TcpProxy,
    database_url: str,
    db: Database,
    people: dict[str, Person],
    caplog: pytest.LogCaptureFixture,
) -> None:
    through_proxy = database_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{pg_proxy.port}/")
    assert through_proxy != database_url
    rt = await open_parts(database_url=through_proxy, offline_latency_ms=20, batch_concurrency=4)
    batch_id = await start_batch(rt, people["faculty"], ITEMS)
    await _wait_completed(rt, batch_id, ITEMS // 4)

    await pg_proxy.cut()  # every connection dropped, new ones refused
    cut_at = time.monotonic()
    at_cut = await load_batch(db, batch_id)  # the test's own connection does not go through the proxy
    await asyncio.sleep(OUTAGE_S)
    assert (await load_batch(db, batch_id)).last_seq == at_cut.last_seq, "a write got through the cut"
    await pg_proxy.restore()
    restored_at = time.monotonic()
    async with asyncio.timeout(60):
        while (await load_batch(db, batch_id)).status != "completed":
            await asyncio.sleep(0.05)
    finished_in = time.monotonic() - restored_at

    batch = await assert_consistent(db, batch_id)
    assert batch.completed_items == ITEMS
    failed = [p for _, name, p in await event_log(db, batch_id) if name == "item.failed"]
    retried = {r.getMessage().split()[2] for r in caplog.records if r.getMessage().startswith("recording item")}
    assert retried, "no attempt finished while the database was away: the cut proved nothing"
    print(
        f"\nPostgreSQL away {restored_at - cut_at:.1f}s at {at_cut.completed_items}/{ITEMS}: the batch finished "
        f"{finished_in:.1f}s after it came back; {len(retried)} outcomes were recorded late, {len(failed)} attempts "
        "failed and were retried"
    )
