"""Redis killed and restarted empty (a private `redis-server`, never the shared one) in the middle of a
batch: streams keep going from the event log while it is away, the client sees no gap, and the queue,
which came back with neither its messages nor its consumer group, works again at once."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from livebatch.db import Database
from tests.checks import assert_consistent, load_batch
from tests.conftest import Person, SettingsFactory, batch_body
from tests.scaled.conftest import (
    Cluster,
    Follower,
    RedisServer,
    assert_received_exactly_the_log,
    following,
    json_log_lines,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("scaled_only")  # needs PostgreSQL and Redis

ITEMS = 120


async def test_a_redis_restart_loses_no_event_and_the_queue_recovers(
    make_settings: SettingsFactory,
    cluster: Cluster,
    people: dict[str, Person],
    db: Database,
    private_redis: RedisServer,
) -> None:
    settings = make_settings(
        redis_url=private_redis.url,
        offline_latency_ms=20,
        batch_concurrency=16,
        max_concurrency=16,
        dispatch_timeout_s=30.0,  # long: recovery must not wait for the dispatch timeout
        log_format="json",
    )
    faculty = people["faculty"]
    await cluster.start(settings, apis=1, workers=1)
    (api,), (worker,) = cluster.apis, cluster.workers
    async with httpx.AsyncClient(base_url=api.base_url, headers=faculty.headers) as http:
        response = await http.post("/api/v1/generation/batch", json=batch_body(ITEMS))
        assert response.status_code == 201, response.text
        batch_id = response.json()["id"]

        async def ready() -> int:
            return (await http.get("/readyz")).status_code

        async with following([api.base_url], faculty.token, batch_id) as follower:
            await follower.wait_for(lambda f: f.count("item.completed") >= ITEMS // 3, timeout=60, what="a third")
            private_redis.kill()
            await wait_until(lambda: _is(ready(), 503), timeout=10, what="/readyz to notice")

            # Redis is away: the work in flight ends, nothing new can be queued, and the stream still
            # delivers every event committed meanwhile, read from the log.
            async def stalled() -> bool:
                batch = await load_batch(db, batch_id)
                return batch.in_progress_items == 0 and follower.last == batch.last_seq

            await wait_until(stalled, timeout=20, what="the batch to stall with the stream up to date")
            stalled_at = await load_batch(db, batch_id)
            assert stalled_at.completed_items < ITEMS

            private_redis.start()
            restarted = time.monotonic()
            await private_redis.wait_up()
            before = follower.count("item.completed")
            await follower.wait_for(lambda f: f.count("item.completed") > before, timeout=30, what="work to resume")
            recovered_in = time.monotonic() - restarted
            await wait_until(lambda: _is(ready(), 200), timeout=10, what="/readyz to recover")
            async with asyncio.timeout(90):
                await follower.complete.wait()

    batch = await assert_consistent(db, batch_id)
    assert batch.completed_items + batch.failed_items == ITEMS
    events = await assert_received_exactly_the_log(follower, db)
    assert _stream_ends(follower) == [], "the stream was cut: the API's own connection should have held"
    logged = json_log_lines(worker)
    assert any("run_id" in e["message"] or "consumer group is gone" in e["message"] for e in logged)
    requeued = sum(e.get("requeued", 0) for e in logged if e["message"].startswith("sweeper:"))
    print(
        f"\nRedis restart: {events} events, none missed or repeated; work resumed {recovered_in:.2f}s after "
        f"Redis came back ({requeued} dispatches re-queued; {stalled_at.completed_items} done before)"
    )


async def _is(status: object, expected: int) -> bool:
    assert asyncio.iscoroutine(status)
    return bool(await status == expected)


def _stream_ends(follower: Follower) -> list[tuple[str, str]]:
    return [end for end in follower.ends if end[1] != "clean"]
