"""The scaled run is what it claims: PostgreSQL, the Redis stream queue with a real receiver, and the Redis
fan-out, for every test that uses the shared fixtures."""

from __future__ import annotations

import httpx
import redis.asyncio as redis

from livebatch.batches.events import LOGGED_EVENT_NAMES
from livebatch.config import Settings
from livebatch.events.log import LoggedEvent, Notice
from livebatch.events.redis_bus import RedisBus, bus_key
from livebatch.generation.queue import ItemQueue
from livebatch.parts import Parts
from tests.checks import assert_consistent, wait_for_status
from tests.conftest import Person, batch_body


async def test_the_parts_fixture_runs_on_postgresql_and_redis(
    parts: Parts, client: httpx.AsyncClient, people: dict[str, Person], settings: Settings
) -> None:
    assert parts.db.engine.dialect.name == "postgresql"
    assert isinstance(parts.bus, RedisBus)
    assert isinstance(parts.queue.broker, ItemQueue)

    response = await client.post("/api/v1/generation/batch", json=batch_body(6), headers=people["faculty"].headers)
    assert response.status_code == 201, response.text
    batch_id = response.json()["id"]
    await wait_for_status(parts, batch_id)  # woken by notices that came back over Redis pub/sub
    batch = await assert_consistent(parts.db, batch_id)
    assert batch.status == "completed"

    queue = redis.from_url(settings.redis_url or "")
    try:
        (group,) = await queue.xinfo_groups(f"{settings.redis_prefix}:items")
        subscribers = dict(await queue.pubsub_numsub(f"{settings.redis_prefix}:events"))
    finally:
        await queue.aclose()
    assert group["entries-read"] >= 6 and group["pending"] == 0  # every item went through the stream, acked
    assert subscribers[f"{settings.redis_prefix}:events".encode()] == 1

    # A notice published by another process (another bus on its own connection) reaches this one's streams.
    other = RedisBus(
        settings.redis_url or "",
        prefix=settings.redis_prefix,
        key=bus_key(settings.effective_jwt_secret),
        names=LOGGED_EVENT_NAMES,
    )
    await other.start()
    try:
        with parts.bus.subscribe(batch_id) as subscription:
            await other.publish([Notice(batch_id, (LoggedEvent.of(99, "item.started", "{}"),))])
            received = await subscription.get(timeout=5)
    finally:
        await other.aclose()
    assert isinstance(received, Notice) and received.events[0].seq == 99
