"""A worker SIGKILLed in the middle of a batch: its leases expire, the sweeper of the other worker takes
its items and its lost queue messages back, and every item still ends exactly once."""

from __future__ import annotations

import asyncio
import time

import httpx

from livebatch.db import Database
from tests.checks import assert_consistent, event_log
from tests.conftest import Person, SettingsFactory, batch_body
from tests.scaled.conftest import Cluster, assert_received_exactly_the_log, following, json_log_lines

ITEMS = 200
STOPPED_ITEMS = 120


async def test_a_killed_worker_loses_no_item_and_duplicates_none(
    make_settings: SettingsFactory, cluster: Cluster, people: dict[str, Person], db: Database
) -> None:
    settings = make_settings(
        offline_latency_ms=20,
        batch_concurrency=16,
        max_concurrency=16,
        lease_s=3.0,  # a dead worker's items come back after this
        dispatch_timeout_s=2.0,  # and the messages it had fetched but not claimed after this
        sweep_interval_s=0.5,
        log_format="json",
    )
    faculty = people["faculty"]
    await cluster.start(settings, apis=1, workers=2)
    (api,) = cluster.apis
    victim, survivor = cluster.workers
    async with httpx.AsyncClient(base_url=api.base_url, headers=faculty.headers) as http:
        response = await http.post("/api/v1/generation/batch", json=batch_body(ITEMS))
    assert response.status_code == 201, response.text
    batch_id = response.json()["id"]

    async with following([api.base_url], faculty.token, batch_id) as follower:
        await follower.wait_for(lambda f: f.count("item.completed") >= ITEMS // 3, timeout=60, what="a third")
        assert victim.process is not None
        victim.process.kill()
        killed_at = time.monotonic()
        async with asyncio.timeout(90):
            await follower.complete.wait()
        recovered_in = time.monotonic() - killed_at
    assert victim.process.wait(5) == -9

    batch = await assert_consistent(db, batch_id)  # counters, items, generated rows and log agree
    assert batch.pending_items == 0 and batch.in_progress_items == 0
    assert batch.completed_items + batch.failed_items == ITEMS
    log = await event_log(db, batch_id)
    completed_ids = [payload["itemId"] for _, name, payload in log if name == "item.completed"]
    assert len(completed_ids) == len(set(completed_ids)) == batch.completed_items, "an item was generated twice"
    await assert_received_exactly_the_log(follower, db)

    expired = sum(1 for _, name, p in log if name == "item.failed" and "lease expired" in p["errorMessage"])
    sweeps = [e for e in json_log_lines(survivor) if e["message"].startswith("sweeper:")]
    requeued = sum(e["requeued"] for e in sweeps)
    assert expired + requeued > 0, "the killed worker held no work: the test proved nothing"
    print(
        f"\nSIGKILL: {expired} expired leases retried, {requeued} lost dispatches re-queued; "
        f"{batch.completed_items} completed, {batch.failed_items} failed; "
        f"batch ended {recovered_in:.1f}s after the kill"
    )


async def test_a_worker_stopped_with_sigterm_finishes_its_attempts_and_hands_back_the_rest(
    make_settings: SettingsFactory, cluster: Cluster, people: dict[str, Person], db: Database
) -> None:
    settings = make_settings(
        offline_latency_ms=20,
        batch_concurrency=24,
        max_concurrency=8,  # a backlog of received messages waits for a slot in each worker
        lease_s=60.0,
        dispatch_timeout_s=60.0,  # neither may be what brings the stopped worker's items back
        sweep_interval_s=0.5,
        log_format="json",
    )
    faculty = people["faculty"]
    await cluster.start(settings, apis=1, workers=2)
    (api,) = cluster.apis
    stopping, _ = cluster.workers
    async with httpx.AsyncClient(base_url=api.base_url, headers=faculty.headers) as http:
        response = await http.post("/api/v1/generation/batch", json=batch_body(STOPPED_ITEMS))
    assert response.status_code == 201, response.text
    batch_id = response.json()["id"]

    async with following([api.base_url], faculty.token, batch_id) as follower:
        await follower.wait_for(lambda f: f.count("item.completed") >= STOPPED_ITEMS // 4, timeout=60, what="a third")
        assert stopping.process is not None
        stopping.process.terminate()
        signalled = time.monotonic()
        exit_code = await asyncio.to_thread(stopping.process.wait, 30)
        stopped_in = time.monotonic() - signalled
        async with asyncio.timeout(60):
            await follower.complete.wait()
        finished_in = time.monotonic() - signalled

    assert exit_code == 0
    batch = await assert_consistent(db, batch_id)
    assert batch.completed_items == STOPPED_ITEMS
    log = await event_log(db, batch_id)
    assert not [p for _, name, p in log if name == "item.failed"], "an attempt was cut off or left to expire"
    await assert_received_exactly_the_log(follower, db)
    entries = json_log_lines(stopping)
    handed_back = sum(e.get("handed_back", 0) for e in entries)
    assert handed_back > 0  # with 4 slots and a window of 16, the stopped worker had some waiting
    assert entries[-1]["message"] == "worker stopped"
    print(
        f"\nSIGTERM worker: exited 0 in {stopped_in:.2f}s, {handed_back} received items handed back; "
        f"the batch ended {finished_in:.1f}s after the signal, no attempt failed"
    )
