"""An embedded server killed mid-attempt (SIGKILL) and started again on the same data: it knows the claims
its previous life held (the lease owner's name is kept, under a lock, in its data directory) and releases
them at once, so the items run again without waiting for their leases and without spending an attempt
(issue 19, item 10). Another process on the same directory, alive, keeps its claims."""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select

from livebatch.batches.models import Item
from livebatch.db import Database
from tests.api.conftest import BATCH
from tests.checks import assert_consistent, event_log, load_batch
from tests.conftest import Person, SettingsFactory, batch_body
from tests.reliability.conftest import Serve

pytestmark = pytest.mark.usefixtures("embedded_only")

LEASE_S = 60.0  # what a restart would wait without knowing its own claims


async def _in_progress(db: Database, batch_id: str) -> list[Item]:
    async with db.read_session() as session:
        stmt = select(Item).where(Item.batch_id == UUID(batch_id), Item.status == "in_progress")
        return list((await session.execute(stmt)).scalars())


async def _wait_in_progress(db: Database, batch_id: str, count: int) -> list[Item]:
    async with asyncio.timeout(30):
        while len(items := await _in_progress(db, batch_id)) < count:
            await asyncio.sleep(0.05)
    return items


async def _create(base_url: str, person: Person, count: int) -> str:
    async with httpx.AsyncClient(base_url=base_url, headers=person.headers, timeout=30) as http:
        created = await http.post(BATCH, json=batch_body(count))
    assert created.status_code == 201, created.text
    batch_id: str = created.json()["id"]
    return batch_id


async def test_a_restarted_embedded_server_releases_its_own_claims_at_once(
    make_settings: SettingsFactory, serve: Serve, db: Database, people: dict[str, Person]
) -> None:
    # One attempt an item: an attempt lost to the crash and counted would fail its item for good.
    settings = make_settings(lease_s=LEASE_S, offline_latency_ms=3000, batch_concurrency=2, max_attempts=1)
    first = serve(settings)
    batch_id = await _create(first.base_url, people["faculty"], 4)
    orphans = {item.id for item in await _wait_in_progress(db, batch_id, 2)}
    first.kill()

    restarted = time.monotonic()
    second = serve(settings)
    async with asyncio.timeout(LEASE_S / 2):
        while (await load_batch(db, batch_id)).status not in ("completed", "completed_with_errors"):
            await asyncio.sleep(0.1)
    took = time.monotonic() - restarted
    # Once it is over: read while it runs, the row and the log are two reads, and a commit may fall between.
    batch = await assert_consistent(db, batch_id)

    assert (batch.status, batch.completed_items, batch.failed_items) == ("completed", 4, 0)
    async with db.read_session() as session:
        items = list((await session.execute(select(Item).where(Item.batch_id == UUID(batch_id)))).scalars())
    assert [item.attempts for item in items] == [1, 1, 1, 1]
    assert [name for _, name, _ in await event_log(db, batch_id) if name == "item.failed"] == []
    assert "released 2 claims" in second.log()
    print(f"\n{len(orphans)} claims released; the batch finished {took:.1f}s after the restart (lease {LEASE_S:.0f}s)")


async def test_a_second_server_on_the_same_directory_leaves_the_first_ones_claims_alone(
    make_settings: SettingsFactory, serve: Serve, db: Database, people: dict[str, Person]
) -> None:
    settings = make_settings(lease_s=LEASE_S, offline_latency_ms=5000, batch_concurrency=2)
    first = serve(settings)
    batch_id = await _create(first.base_url, people["faculty"], 2)
    held = {item.id: (item.lease_owner, item.attempts) for item in await _wait_in_progress(db, batch_id, 2)}
    assert all(owner and owner.startswith("embedded-") for owner, _ in held.values())

    second = serve(settings)  # started, reconciled and swept: the first one is alive

    assert {item.id: (item.lease_owner, item.attempts) for item in await _in_progress(db, batch_id)} == held
    assert "released" not in second.log()
    first.kill()
