"""Resuming from an event that was pruned from the log (`livebatch prune`): `batch.reset` and a fresh snapshot,
never a silent gap; and nothing changes for a client whose next event is still in the log."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import timedelta
from uuid import UUID

import httpx
import pytest

from livebatch.batches import retention
from livebatch.clock import utcnow
from livebatch.db import Database
from livebatch.events.bus import LocalBus
from livebatch.uow import Transactions
from tests.checks import event_log, load_batch
from tests.conftest import Backend
from tests.fakes.llm_server import FakeLLM
from tests.stream.servers import Served, serve
from tests.stream.support import control, create_batch, read_stream, stop_after

RESET = {"batchId", "lastEventId", "prunedThrough", "reason"}


class _Nowhere:
    async def enqueue(self, item_ids: Sequence[UUID]) -> None:
        raise AssertionError("pruning queues no work")


async def prune_now(db: Database, batch_id: str) -> int:
    """What `livebatch prune` does to one finished batch, as if it had ended long ago."""
    async with Transactions(db, LocalBus(), _Nowhere()).begin() as uow:
        deleted = await retention.prune_batch(uow, UUID(batch_id), finished_before=utcnow() + timedelta(days=1))
        await uow.commit()
    return deleted


@pytest.fixture(scope="module")
def server(backend: Backend, tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM) -> Iterator[Served]:
    with serve(
        backend,
        tmp_path_factory.mktemp("reset"),
        provider="openai",
        openai_base_url=fake_llm.base_url,
        openai_timeout_s=5,
        batch_concurrency=2,
    ) as served:
        yield served


@pytest.fixture
async def http(server: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with server.http() as client:
        yield client


@pytest.fixture
async def db(server: Served) -> AsyncIterator[Database]:
    async with server.database() as database:
        yield database


async def test_a_resume_from_a_pruned_event_gets_batch_reset_then_the_snapshot_and_the_end(
    http: httpx.AsyncClient, db: Database, fake_llm: FakeLLM
) -> None:
    fake_llm.default = "ok"
    batch = await create_batch(http, 6)
    first = await read_stream(http, batch["id"])
    assert first.complete
    log = await event_log(db, batch["id"])
    last = log[-1][0]
    before = (await http.get(f"/api/v1/generation/batch/{batch['id']}")).json()

    assert await prune_now(db, batch["id"]) == last - 1
    assert [(seq, name) for seq, name, _ in await event_log(db, batch["id"])] == [(last, "batch.complete")]
    assert await prune_now(db, batch["id"]) == 0, "pruning again finds nothing"
    pruned = await load_batch(db, batch["id"])
    assert pruned.pruned_through == last - 1 and pruned.last_seq == last
    await assert_consistent_after_prune(db, batch["id"])

    # A client that saw events up to 3: events 4 .. last-1 are gone. It is told so, then gets the batch as it is.
    resumed = await read_stream(http, batch["id"], header_id=3)
    assert resumed.status == 200
    assert [(e.event, e.id) for e in resumed.events] == [
        ("batch.reset", str(last - 1)),
        ("batch.progress", str(last - 1)),
        ("batch.complete", str(last)),
    ]
    reset = json.loads(resumed.events[0].data)
    assert set(reset) == RESET
    assert reset == {"batchId": batch["id"], "lastEventId": last - 1, "prunedThrough": last - 1, "reason": "pruned"}
    assert json.loads(resumed.events[1].data) == before["snapshot"], "the fresh snapshot is the batch as it is"
    assert json.loads(resumed.events[2].data) == log[-1][2]
    # The page's first connection carries the id in the query: the same answer.
    by_query = await read_stream(http, batch["id"], query_id=1)
    assert [e.event for e in by_query.events] == ["batch.reset", "batch.progress", "batch.complete"]

    # A client whose next event is still in the log notices nothing.
    assert [e.event for e in (await read_stream(http, batch["id"], header_id=last - 1)).events] == [
        "batch.progress",
        "batch.complete",
    ]
    assert [e.event for e in (await read_stream(http, batch["id"])).events] == ["batch.progress", "batch.complete"]
    assert (await read_stream(http, batch["id"], header_id=last)).status == 204
    # The batch and what it made are all still there.
    after = (await http.get(f"/api/v1/generation/batch/{batch['id']}")).json()
    assert after == before
    items = (await http.get(f"/api/v1/generation/batch/{batch['id']}/items")).json()["items"]
    assert len(items) == 6


async def assert_consistent_after_prune(db: Database, batch_id: str) -> None:
    """The counters and items still agree; only the log is shorter (its last event kept)."""
    batch = await load_batch(db, batch_id)
    assert batch.completed_items + batch.failed_items + batch.cancelled_items == batch.total_items
    assert (await event_log(db, batch_id))[-1][2]["status"] == batch.status


async def test_a_batch_retried_after_its_log_was_pruned_resets_an_old_client_to_now_and_goes_on_live(
    http: httpx.AsyncClient, db: Database, fake_llm: FakeLLM
) -> None:
    fake_llm.default = "401"  # the key is refused: the batch fails at once
    batch = await create_batch(http, 4)
    assert (await read_stream(http, batch["id"])).named("batch.complete")[0]["status"] == "failed"
    assert await prune_now(db, batch["id"]) > 0
    pruned_through = (await load_batch(db, batch["id"])).pruned_through

    fake_llm.default = "ok"
    fake_llm.latency_s = 0.5  # slow enough that the retried batch is still running when the client comes back
    try:
        assert (await control(http, batch["id"], "retry-failed")).status_code == 200
        resumed = await read_stream(http, batch["id"], header_id=1, stop=stop_after(3))
        names = [e.event for e in resumed.events]
        assert names[:2] == ["batch.reset", "batch.progress"]
        reset = json.loads(resumed.events[0].data)
        assert reset["prunedThrough"] == pruned_through and int(resumed.events[0].id) == reset["lastEventId"]
        assert reset["lastEventId"] > pruned_through, "a running batch resets to its last event"
        # From the reset's id on, it is an ordinary resume: the live events follow, to the end.
        rest = await read_stream(http, batch["id"], header_id=reset["lastEventId"])
    finally:
        fake_llm.latency_s = 0.0
    assert rest.named("batch.complete")[0]["status"] == "completed"
    log = await event_log(db, batch["id"])
    assert rest.logged == [event for event in log if event[0] > reset["lastEventId"]]
    finished = await load_batch(db, batch["id"])
    assert (finished.completed_items, finished.failed_items) == (4, 0)
