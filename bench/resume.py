"""Resuming a progress stream 10 000 events back: time to the first replayed event and to the end of the replay.

A batch (paused, so that nothing moves) gets an event log of 10 500 `item.started`/`item.completed` rows,
written in bulk through the log's table. A real `livebatch serve` (embedded: SQLite) runs on loopback, and an
SSE client (httpx, with a lean parser of its own) connects with `Last-Event-ID` 10 000 events before the end.
Measured from sending the request: the first replayed event, and the fresh `batch.progress` that follows the replay
(the end of the replay). Median of several reconnects. Baseline: the raw SELECT of the same 10 000 rows
in this process, through SQLAlchemy, which is what the server cannot do without.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID, uuid4

import httpx
from sqlalchemy import insert, select, update

from bench.common import Figure, median
from bench.scratch import bulk_batch, env_of, scratch_database, seed, settings_for
from livebatch.auth import mint_token
from livebatch.batches.events import ItemCompleted, ItemStarted
from livebatch.batches.models import Batch
from livebatch.clock import iso, utcnow
from livebatch.config import Settings
from livebatch.db import Database
from livebatch.events.log import LogEntry

BACK, QUICK_BACK = 10_000, 500
EXTRA = 500  # events before the resume point: the log holds more than is replayed
ROUNDS, QUICK_ROUNDS = 5, 3
_BOUND = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@dataclass(frozen=True)
class Replay:
    first_ms: float
    end_ms: float
    replayed: int


async def write_log(db: Database, batch_id: UUID, count: int) -> None:
    """`count` events of a batch in progress, alternately an item's start and its completion."""
    now = utcnow()
    rows = []
    for seq in range(1, count + 1):
        idx = (seq - 1) // 2
        if seq % 2:
            event: ItemStarted | ItemCompleted = ItemStarted(item_id=str(uuid4()), item_index=idx, started_at=iso(now))
        else:
            event = ItemCompleted(
                item_id=str(uuid4()),
                item_index=idx,
                generation_id=str(uuid4()),
                duration_ms=1500,
                completed_at=iso(now),
            )
        rows.append(
            {"batch_id": batch_id, "seq": seq, "name": event.name, "payload": event.to_json(), "created_at": now}
        )
    async with db.session() as session:
        for start in range(0, count, 5000):
            await session.execute(insert(LogEntry), rows[start : start + 5000])
        await session.execute(update(Batch).where(Batch.id == batch_id).values(last_seq=count))
        await session.commit()


async def select_rows(db: Database, batch_id: UUID, after: int) -> float:
    """Milliseconds for the raw SELECT of every event after `after`."""
    started = time.perf_counter()
    async with db.read_session() as session:
        stmt = (
            select(LogEntry.seq, LogEntry.name, LogEntry.payload)
            .where(LogEntry.batch_id == batch_id, LogEntry.seq > after)
            .order_by(LogEntry.seq)
        )
        rows = (await session.execute(stmt)).all()
    assert rows
    return (time.perf_counter() - started) * 1000


async def resume(base_url: str, token: str, batch_id: UUID, after: int, last: int) -> Replay:
    """One reconnect: from sending the request to the first replayed event and to the snapshot after them."""
    url = f"{base_url}/api/v1/generation/batch/{batch_id}/progress"
    headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": str(after), "Accept": "text/event-stream"}
    async with httpx.AsyncClient(timeout=30) as client:
        started = time.perf_counter()
        first = end = None
        expected = after + 1
        async with client.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200, response.status_code
            async for name, event_id in events(response.aiter_bytes()):
                if name == "batch.progress":
                    if expected > after + 1:  # the snapshot after the replay
                        end = time.perf_counter()
                        break
                    continue
                if first is None:
                    first = time.perf_counter()
                assert event_id == str(expected), f"event {event_id} where {expected} was due"
                expected += 1
    assert first is not None and end is not None, "no replay, or no snapshot after it"
    assert expected == last + 1, f"replayed up to {expected - 1} of {last}"
    return Replay((first - started) * 1000, (end - started) * 1000, expected - after - 1)


async def events(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[str, str]]:
    """(event, id) of each SSE event in a byte stream: blocks end with a blank line; `event:` and `id:` fields.
    Lean on purpose: httpx-sse's line-by-line decoding costs about 30 us an event, a third of a replay here,
    which would measure this client rather than the server."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        *blocks, buffer = buffer.split(b"\n\n")
        for block in blocks:
            name = event_id = ""
            for line in block.split(b"\n"):
                if line.startswith(b"event:"):
                    name = line[6:].strip().decode()
                elif line.startswith(b"id:"):
                    event_id = line[3:].strip().decode()
            if name:
                yield name, event_id


class Server:
    """`livebatch serve` in a subprocess of this worktree's code, on a port it picks itself."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEBATCH_")} | env_of(settings)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "livebatch", "serve", "--host", "127.0.0.1", "--port", "0"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.base_url = ""

    async def ready(self, timeout: float = 60) -> str:
        async with asyncio.timeout(timeout), httpx.AsyncClient() as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"livebatch serve exited:\n{self.log_path.read_text()[-3000:]}")
                bound = _BOUND.search(self.log_path.read_bytes())
                if bound is not None:
                    self.base_url = f"http://127.0.0.1:{int(bound.group(1))}"
                    try:
                        if (await client.get(f"{self.base_url}/healthz")).status_code == 200:
                            return self.base_url
                    except httpx.TransportError:
                        pass
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


async def measure(back: int, rounds: int) -> list[Figure]:
    total = back + EXTRA
    async with scratch_database("sqlite") as (url, data_dir):
        settings = settings_for(url, data_dir, log_level="INFO")  # the server logs the port it bound at INFO
        db = Database(url, pool_size=2, max_overflow=2)
        try:
            owner = await seed(db)
            batch = await bulk_batch(db, owner, 1000, done=0, status="paused")
            await write_log(db, batch.id, total)
            token = mint_token(settings, owner, now=utcnow())
            with tempfile.TemporaryDirectory(prefix="lbbench-serve-") as tmp:
                server = Server(settings, Path(tmp) / "serve.log")
                try:
                    base_url = await server.ready()
                    await resume(base_url, token, batch.id, total - 10, total)  # warm-up: imports, pools, caches
                    replays = [await resume(base_url, token, batch.id, total - back, total) for _ in range(rounds)]
                finally:
                    server.stop()
            selects = [await select_rows(db, batch.id, total - back) for _ in range(rounds)]
        finally:
            await db.dispose()
    assert all(r.replayed == back for r in replays)
    return [
        Figure(
            f"resume {back:,} events back: first replayed event (sqlite)", median([r.first_ms for r in replays]), "ms"
        ),
        Figure(
            f"resume {back:,} events back: whole replay (sqlite)",
            median([r.end_ms for r in replays]),
            "ms",
            baseline=median(selects),
            target=("<", 1000),
        ),
    ]


def run(quick: bool) -> list[Figure]:
    back, rounds = (QUICK_BACK, QUICK_ROUNDS) if quick else (BACK, ROUNDS)
    return asyncio.run(measure(back, rounds))
