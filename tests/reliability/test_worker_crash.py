"""A worker SIGKILLed in the middle of a batch: its leases expire, the sweeper of the other worker takes
its items and its lost queue messages back, and every item still ends exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from uuid import UUID

import httpx
import pytest

from livebatch.batches import service
from livebatch.batches.models import Batch
from livebatch.batches.schemas import BatchCreate
from livebatch.db import Database
from livebatch.parts import Parts
from tests.checks import assert_consistent, event_log, load_batch, wait_for_status
from tests.conftest import Person, SettingsFactory, batch_body
from tests.scaled.conftest import Cluster, assert_received_exactly_the_log, following, json_log_lines

pytestmark = pytest.mark.usefixtures("scaled_only")  # needs PostgreSQL and Redis

ITEMS = 120
STOPPED_ITEMS = 80


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
        max_concurrency=2,  # each worker receives up to 8 messages: a backlog waits for a slot
        lease_s=60.0,
        dispatch_timeout_s=60.0,  # neither may be what brings the stopped worker's items back
        sweep_interval_s=0.5,
        log_format="json",
    )
    api = Parts(settings, worker=False)  # the test is the API instance: it creates and watches
    await api.start()
    try:
        await cluster.start(settings, workers=2)
        stopping, _ = cluster.workers
        async with api.transactions.begin() as uow:
            spec = BatchCreate.model_validate(batch_body(STOPPED_ITEMS))
            batch = await service.create_batch(
                uow, spec, owner=people["faculty"].user, limits=api.limits, now=api.now()
            )
            await uow.commit()
        await _wait_for(api, batch.id, lambda b: b.completed_items >= STOPPED_ITEMS // 4)
        assert stopping.process is not None
        stopping.process.terminate()
        signalled = time.monotonic()
        exit_code = await asyncio.to_thread(stopping.process.wait, 30)
        stopped_in = time.monotonic() - signalled
        await wait_for_status(api, batch.id, timeout=60)
        finished_in = time.monotonic() - signalled
    finally:
        await api.aclose()

    assert exit_code == 0
    done = await assert_consistent(db, batch.id)
    assert done.completed_items == STOPPED_ITEMS
    log = await event_log(db, batch.id)
    failed = [p for _, name, p in log if name == "item.failed"]
    assert not failed, f"an attempt was cut off or left to expire: {failed}"
    entries = json_log_lines(stopping)
    handed_back = sum(e.get("handed_back", 0) for e in entries)
    assert handed_back > 0
    assert entries[-1]["message"] == "worker stopped"
    print(
        f"\nSIGTERM worker: exited 0 in {stopped_in:.2f}s, {handed_back} received items handed back; "
        f"the batch ended {finished_in:.1f}s after the signal, no attempt failed"
    )


async def _wait_for(rt: Parts, batch_id: UUID, condition: Callable[[Batch], bool], timeout: float = 60) -> None:
    with rt.bus.subscribe(str(batch_id)) as subscription:
        async with asyncio.timeout(timeout):
            while not condition(await load_batch(rt.db, batch_id)):
                await subscription.get(timeout=0.5)
