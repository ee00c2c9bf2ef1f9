"""Two API instances and two workers as real processes on PostgreSQL and Redis: one batch of 300 items,
followed on the instance that runs no worker, and the instances' metrics compared with the batch."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import redis.asyncio as redis

from livebatch.db import Database
from tests.checks import assert_consistent, event_log
from tests.conftest import Person, SettingsFactory, batch_body
from tests.scaled.conftest import (
    Cluster,
    assert_received_exactly_the_log,
    following,
    json_log_lines,
    sample,
    scrape,
    wait_until,
)

ITEMS, WINDOW = 300, 16


async def test_a_batch_run_by_two_workers_reaches_a_stream_on_another_instance_exactly_once(
    make_settings: SettingsFactory, cluster: Cluster, people: dict[str, Person], db: Database
) -> None:
    settings = make_settings(
        offline_latency_ms=10,
        offline_failure_rate=0.05,
        batch_concurrency=WINDOW,
        max_concurrency=WINDOW,
        log_format="auto",
    )
    faculty = people["faculty"]
    await cluster.start(settings, apis=2)
    creator, watcher = cluster.apis
    async with httpx.AsyncClient(base_url=creator.base_url, headers=faculty.headers) as http:
        response = await http.post("/api/v1/generation/batch", json=batch_body(ITEMS))
    assert response.status_code == 201, response.text
    batch_id = response.json()["id"]

    async with following([watcher.base_url], faculty.token, batch_id) as follower:
        # No worker yet: the window sits in the Redis stream, and the metrics say so.
        await follower.wait_for(lambda f: f.count("batch.progress") >= 1, timeout=10, what="the first snapshot")
        before = await scrape(f"{watcher.base_url}/metrics")
        queue = redis.from_url(settings.redis_url or "")
        try:
            queued_messages = await queue.xlen(f"{settings.redis_prefix}:items")
        finally:
            await queue.aclose()
        assert sample(before, "livebatch_queue_depth") == WINDOW == queued_messages
        assert sample(before, "livebatch_items", status="pending") == ITEMS
        assert sample(before, "livebatch_open_streams") == 1
        assert sample(await scrape(f"{creator.base_url}/metrics"), "livebatch_open_streams") == 0

        started = time.monotonic()
        await cluster.start(settings, workers=2)
        async with asyncio.timeout(90):
            await follower.complete.wait()
        took = time.monotonic() - started

    batch = await assert_consistent(db, batch_id)
    assert batch.status in ("completed", "completed_with_errors")
    assert batch.completed_items + batch.failed_items == ITEMS
    delivered = await assert_received_exactly_the_log(follower, db)
    assert follower.ends == [], "the stream broke off before batch.complete"

    # What the user sees: counts never go backwards, and a last snapshot comes right before the end.
    progress = [e.data for e in follower.events if e.name == "batch.progress"]
    done = [p["completedItems"] + p["failedItems"] for p in progress]
    assert done == sorted(done), "a progress snapshot went backwards"
    assert [e.name for e in follower.events[-2:]] == ["batch.progress", "batch.complete"]
    assert progress[-1]["completedItems"] == batch.completed_items

    # Both workers wrote to the batch at once; every attempt is in the latency histogram once.
    log = await event_log(db, batch_id)
    attempts = sum(1 for _, name, _ in log if name in ("item.completed", "item.failed"))
    per_worker = [
        sum(v for (name, _), v in (await scrape(cluster.worker_metrics_url(w))).items() if name.endswith("_count"))
        for w in cluster.workers
    ]
    assert all(n > 0 for n in per_worker), per_worker
    assert sum(per_worker) == attempts

    # The instance that streamed agrees with the batch: items by status, queue, streams, events.
    async def stream_closed() -> bool:
        return sample(await scrape(f"{watcher.base_url}/metrics"), "livebatch_open_streams") == 0

    await wait_until(stream_closed, timeout=10, what="the stream to be released")
    after = await scrape(f"{watcher.base_url}/metrics")
    assert sample(after, "livebatch_items", status="completed") == batch.completed_items
    assert sample(after, "livebatch_items", status="failed") == batch.failed_items
    assert sample(after, "livebatch_items", status="pending") == 0
    assert sample(after, "livebatch_items", status="in_progress") == 0
    assert sample(after, "livebatch_queue_depth") == 0
    assert sample(after, "livebatch_batches", status=batch.status) == 1
    received = Counter(e.name for e in follower.events if e.name != "heartbeat")
    for name, n in received.items():
        assert sample(after, "livebatch_events_delivered_total", event=name) == n, name
    assert sum(v for (name, _), v in after.items() if name == "livebatch_generation_seconds_count") == 0

    for proc in cluster.processes():
        assert json_log_lines(proc), f"{proc.args[0]} logged nothing"
    print(
        f"\n300-item batch: {delivered} logged events streamed, {len(progress)} snapshots, "
        f"{attempts} attempts {per_worker}, {took:.1f}s with workers"
    )
