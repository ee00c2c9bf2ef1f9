"""SIGKILL in the middle of a batch, then start again: nothing lost, nothing generated twice."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from livebatch.batches.models import Batch, GeneratedItem, Item
from livebatch.db import Database
from tests.batches.ledger import Event, assert_attempts_accounted, released
from tests.checks import assert_consistent, event_log
from tests.cli.conftest import BATCH_LINE, LIVEBATCH, RunCli
from tests.conftest import Backend


async def _state(db: Database) -> tuple[str | None, int, int]:
    """(batch id, completed items, items in progress) of the only batch, once it exists."""
    async with db.read_session() as session:
        batch = (await session.execute(select(Batch))).scalar_one_or_none()
        if batch is None:
            return None, 0, 0
        in_progress = (
            await session.execute(select(func.count()).where(Item.batch_id == batch.id, Item.status == "in_progress"))
        ).scalar_one()
        return str(batch.id), batch.completed_items, int(in_progress)


async def test_sigkill_mid_batch_then_restart_finishes_with_nothing_lost_or_doubled(
    run_cli: RunCli, env_for: Callable[..., dict[str, str]], db: Database, tmp_path: Path, backend: Backend
) -> None:
    count = 40
    env = env_for(
        # A short lease: were the killed process's claims not released by the restart, they would not hold it
        # up long (a live process renews its own).
        {"lease_s": 2.0, "dispatch_timeout_s": 1.5, "sweep_interval_s": 0.2, "batch_concurrency": 4},
        LIVEBATCH_OFFLINE_LATENCY_MS="150",
        LIVEBATCH_OFFLINE_FAILURE_RATE="0.1",
        LIVEBATCH_MAX_ATTEMPTS="3",
    )
    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.Popen([LIVEBATCH, "run-batch", "--count", str(count)], env=env, stdout=log, stderr=log)
    try:
        async with asyncio.timeout(60):
            while True:
                batch_id, completed, in_progress = await _state(db)
                if completed >= 5 and in_progress >= 2:
                    break
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
                await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    assert batch_id is not None
    before = await assert_consistent(db, batch_id)
    assert before.status == "running" and before.in_progress_items >= 2
    orphans = {str(i.id) for i in await _in_progress(db)}

    restarted = time.monotonic()
    run = run_cli("run-batch", "--batch", batch_id, env=env, timeout=90)
    restart_s = time.monotonic() - restarted
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    match = BATCH_LINE.search(run.stdout)
    assert match is not None and match["id"] == batch_id
    summary = run.summary()
    assert int(summary["completed"]) + int(summary["failed"]) == count

    batch = await assert_consistent(db, batch_id)
    assert batch.pending_items == batch.in_progress_items == 0
    assert batch.completed_items + batch.failed_items == count
    ledger = await assert_attempts_accounted(db, batch_id, max_attempts=3)
    async with db.read_session() as session:
        generated = Counter((await session.execute(select(GeneratedItem.item_id))).scalars())
    assert all(n == 1 for n in generated.values()) and len(generated) == batch.completed_items
    # Embedded, the attempts the killed process held were released by the restart (the same data directory:
    # its own claims), uncounted, then tried again, none waiting for its lease. Scaled out (a Redis queue, as
    # any worker), they were ended by their lease, then tried again.
    events = await event_log(db, batch_id)
    expired = {p["itemId"] for _, name, p in events if name == "item.failed" and "lease expired" in p["errorMessage"]}
    by_item: dict[str, list[Event]] = {}
    for event in events:
        if event[1].startswith("item."):
            by_item.setdefault(event[2]["itemId"], []).append(event)
    let_go = {item_id for item_id, history in by_item.items() if released(history)}
    assert (expired, let_go) == ((orphans, set()) if backend.scaled else (set(), orphans))
    print(
        f"killed at {before.completed_items} completed, {len(orphans)} in progress; "
        f"restart ran {restart_s:.1f}s; {ledger}"
    )


async def _in_progress(db: Database) -> list[Item]:
    async with db.read_session() as session:
        return list((await session.execute(select(Item).where(Item.status == "in_progress"))).scalars())
