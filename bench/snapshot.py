"""Time to build a progress snapshot (what GET and a stream's connect do) for batches of 10 to 100 000 items.

The snapshot is what `batches/api.py` and `batches/stream.py` build: a read session, the owned batch
(`reads.get_owned_batch`), `snapshot_of` and its JSON. Batches of 10, 1 000 and 100 000 items
(60 % completed) are inserted by the database itself, on SQLite and on a scratch PostgreSQL database.
The calls are interleaved round-robin over the sizes, so that drift on a busy machine hits each alike;
the figure is the median. Flat means the largest batch within 1.5x of the smallest.
"""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

from bench.common import Figure, median
from bench.scratch import Kind, bulk_batch, scratch_database, seed
from livebatch.batches import reads
from livebatch.batches.lifecycle import snapshot_of
from livebatch.db import Database
from livebatch.users.models import User

SIZES = (10, 1_000, 100_000)
QUICK_SIZES = (10, 1_000)


async def snapshot_json(db: Database, batch_id: UUID, owner: User) -> str:
    async with db.read_session() as session:
        batch = await reads.get_owned_batch(session, batch_id, owner)
        return snapshot_of(batch).to_json()


async def measure(kind: Kind, sizes: tuple[int, ...], rounds: int) -> dict[int, float]:
    """Median milliseconds per snapshot, by batch size."""
    async with scratch_database(kind) as (url, _):
        db = Database(url, pool_size=2, max_overflow=2)
        try:
            owner = await seed(db)
            batches = {n: (await bulk_batch(db, owner, n, done=n * 6 // 10)).id for n in sizes}
            timings: dict[int, list[float]] = {n: [] for n in sizes}
            for warm_up in (True, False):
                for _ in range(20 if warm_up else rounds):
                    for n, batch_id in batches.items():
                        started = time.perf_counter()
                        await snapshot_json(db, batch_id, owner)
                        if not warm_up:
                            timings[n].append((time.perf_counter() - started) * 1000)
        finally:
            await db.dispose()
    return {n: median(values) for n, values in timings.items()}


def figures(kind: Kind, by_size: dict[int, float]) -> list[Figure]:
    smallest, largest = min(by_size), max(by_size)
    out = [Figure(f"snapshot, {smallest:,} items ({kind})", by_size[smallest], "ms")]
    for n in sorted(by_size)[1:]:
        target = ("ratio<=", 1.5) if n == largest else None
        out.append(
            Figure(f"snapshot, {n:,} items ({kind})", by_size[n], "ms", baseline=by_size[smallest], target=target)
        )
    return out


def run(quick: bool) -> list[Figure]:
    sizes, rounds = (QUICK_SIZES, 50) if quick else (SIZES, 300)
    out: list[Figure] = []
    for kind in ("sqlite", "postgresql"):
        out += figures(kind, asyncio.run(measure(kind, sizes, rounds)))
    return out
