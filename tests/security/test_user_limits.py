"""A user's limits hold under a burst of concurrent requests to a real server, on both databases: the count
and the write are serialized per user (the user row locked, FOR NO KEY UPDATE on PostgreSQL; SQLite's
BEGIN IMMEDIATE already serializes every writer), and items created in the last day count toward a daily
quota also when their batch was cancelled, so create-and-cancel loops write nothing past it (issue 19,
item 2)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func, select

from livebatch.batches.models import Batch
from livebatch.config import Settings
from livebatch.db import Database
from tests.api.conftest import BATCH
from tests.conftest import Backend, LiveFactory, LiveProcess, Person, SettingsFactory, batch_body
from tests.security.support import row_counts
from tests.stream.support import assert_error

LIMIT = 3
BURST = 20


def _serve(live_process: LiveFactory, backend: Backend, settings: Settings) -> LiveProcess:
    worker = ["--worker"] if backend.scaled else []
    return live_process(settings, "serve", "--host", "127.0.0.1", "--port", "0", *worker, port=0)


async def _burst(server: LiveProcess, requests: list[tuple[str, dict[str, Any] | None]], person: Person) -> list[int]:
    """Every request at once, each on its own connection; their status codes in order."""
    limits = httpx.Limits(max_connections=len(requests))
    async with httpx.AsyncClient(base_url=server.base_url, headers=person.headers, timeout=60, limits=limits) as http:
        answers = await asyncio.gather(*(http.post(path, json=body) for path, body in requests))
    for answer in answers:
        assert answer.status_code in (200, 201, 429), answer.text
    return [answer.status_code for answer in answers]


async def _owned(db: Database, person: Person) -> int:
    async with db.read_session() as session:
        stmt = select(func.count()).select_from(Batch).where(Batch.owner_id == person.user.id)
        return int((await session.execute(stmt)).scalar_one())


async def test_a_burst_of_creates_gets_exactly_the_active_batch_limit(
    make_settings: SettingsFactory, live_process: LiveFactory, backend: Backend, db: Database, people: dict[str, Person]
) -> None:
    # Items that take a minute each: every batch created stays active for the whole burst.
    settings = make_settings(max_running_batches_per_user=LIMIT, offline_latency_ms=60_000, batch_concurrency=1)
    server = _serve(live_process, backend, settings)
    ada = people["faculty"]

    codes = await _burst(server, [(BATCH, batch_body(2))] * BURST, ada)

    assert (codes.count(201), codes.count(429)) == (LIMIT, BURST - LIMIT), codes
    assert await _owned(db, ada) == LIMIT


async def test_a_burst_of_retries_gets_exactly_the_active_batch_limit(
    make_settings: SettingsFactory, live_process: LiveFactory, backend: Backend, db: Database, people: dict[str, Person]
) -> None:
    ada = people["faculty"]
    failing = make_settings(offline_failure_rate=1.0, offline_latency_ms=1, max_attempts=1)
    first = _serve(live_process, backend, failing)
    async with httpx.AsyncClient(base_url=first.base_url, headers=ada.headers, timeout=30) as http:
        ids = []
        for _ in range(2 * LIMIT):  # one at a time, each failed before the next: never more than one active
            created = await http.post(BATCH, json=batch_body(1))
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
            async with asyncio.timeout(30):
                while (await http.get(f"{BATCH}/{created.json()['id']}")).json()["status"] != "failed":
                    await asyncio.sleep(0.05)
    first.stop()
    # Restarted with slow items: a retried batch stays active for the whole burst.
    settings = make_settings(max_running_batches_per_user=LIMIT, offline_latency_ms=60_000, batch_concurrency=1)
    server = _serve(live_process, backend, settings)

    codes = await _burst(server, [(f"{BATCH}/{batch_id}/retry-failed", None) for batch_id in ids], ada)

    assert (codes.count(200), codes.count(429)) == (LIMIT, LIMIT), codes
    async with db.read_session() as session:
        stmt = select(func.count()).select_from(Batch).where(Batch.owner_id == ada.user.id, Batch.status == "running")
        assert (await session.execute(stmt)).scalar_one() == LIMIT


async def test_cancelled_batches_count_toward_the_daily_item_quota(
    make_settings: SettingsFactory, live_process: LiveFactory, backend: Backend, db: Database, people: dict[str, Person]
) -> None:
    settings = make_settings(
        max_items_per_day=100, max_running_batches_per_user=50, offline_latency_ms=60_000, batch_concurrency=1
    )
    server = _serve(live_process, backend, settings)
    ada, grace = people["faculty"], people["other"]
    async with httpx.AsyncClient(base_url=server.base_url, headers=ada.headers, timeout=30) as http:
        for _ in range(2):  # create and cancel: 80 items written, none of them running
            created = await http.post(BATCH, json=batch_body(40))
            assert created.status_code == 201, created.text
            cancelled = await http.post(f"{BATCH}/{created.json()['id']}/cancel")
            assert cancelled.json()["status"] == "cancelled"
        before = await row_counts(db)

        refused = await http.post(BATCH, json=batch_body(40))
        assert_error(refused, 429, "TOO_MANY_ITEMS")
        assert "100" in refused.json()["error"]["message"] and "20" in refused.json()["error"]["message"]
        assert await row_counts(db) == before
        assert (await http.post(BATCH, json=batch_body(20))).status_code == 201  # what is left of the day
        assert_error(await http.post(BATCH, json=batch_body(1)), 429, "TOO_MANY_ITEMS")
    # A burst of creates cannot go past it either, and another user has a quota of their own.
    codes = await _burst(server, [(BATCH, batch_body(10))] * 15, grace)
    assert codes.count(201) == 10, codes
