"""What a client may build on in every `batch.progress` (the README's stream section), over a real server
whose provider is slow: an estimate of the time left from the start, before any item has completed;
counts that add up to the batch, also after a cancel; and, on a resumed stream, a snapshot that describes
exactly the events up to its id."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from httpx_sse import ServerSentEvent

from tests.checks import wait_until
from tests.conftest import Backend
from tests.fakes.llm_server import FakeLLM
from tests.stream.servers import Served, serve
from tests.stream.support import control, create_batch, read_stream, stop_after

PRIOR_MS = 12_000  # the expected time of one item on this server: a slow provider
COUNTS = ("completedItems", "failedItems", "inProgressItems", "pendingItems", "cancelledItems")


@pytest.fixture(scope="module")
def slow(backend: Backend, tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM) -> Iterator[Served]:
    """One item at a time from the fake LLM, which may take its time: an answer the test holds (`timeout:S`)
    keeps its item in progress for S seconds, so nothing completes until the test has looked."""
    with serve(
        backend,
        tmp_path_factory.mktemp("slow"),
        provider="openai",
        openai_base_url=fake_llm.base_url,
        openai_timeout_s=60,
        batch_concurrency=1,
        item_prior_ms=PRIOR_MS,
    ) as server:
        yield server
        fake_llm.release()  # the attempts it still holds fail now: the server stops without waiting for them


async def _until_requested(fake_llm: FakeLLM, count: int) -> None:
    """Until the fake has received `count` requests: what a test queued for them is then used up."""

    async def arrived() -> bool:
        return fake_llm.request_count >= count

    await wait_until(arrived)


async def test_the_eta_is_an_estimate_from_the_start_never_0_while_items_are_left(
    slow: Served, fake_llm: FakeLLM
) -> None:
    requested = fake_llm.request_count
    fake_llm.queue("timeout:30")  # the first item takes 30 s: nothing completes while the test looks
    async with slow.http() as http:
        batch = await create_batch(http, 5)
        assert batch["snapshot"]["estimatedTimeRemainingMs"] == 5 * PRIOR_MS
        first = await read_stream(http, batch["id"], stop=stop_after(1))
        snapshot = json.loads(first.events[0].data)
        # No rate yet (the brief's first snapshot says 0), but 5 items one at a time at 12 s each, not "0 s left".
        assert (snapshot["throughputRate"], snapshot["completedItems"]) == (0, 0)
        assert snapshot["estimatedTimeRemainingMs"] == 5 * PRIOR_MS
        # A pure function of the batch: a reload and another stream show the same figure, which the page
        # counts down between snapshots.
        await _until_requested(fake_llm, requested + 1)
        detail = (await http.get(f"/api/v1/generation/batch/{batch['id']}")).json()
        again = await read_stream(http, batch["id"], stop=stop_after(1))
        assert detail["snapshot"]["inProgressItems"] == 1
        assert detail["snapshot"]["estimatedTimeRemainingMs"] == 5 * PRIOR_MS
        assert json.loads(again.events[0].data)["estimatedTimeRemainingMs"] == 5 * PRIOR_MS
        assert (await control(http, batch["id"], "cancel")).status_code == 200
        over = (await http.get(f"/api/v1/generation/batch/{batch['id']}")).json()
    assert over["snapshot"]["estimatedTimeRemainingMs"] == 0  # cancelled: nothing is left to run


async def test_a_cancelled_batch_shows_its_stopped_items_as_cancelled_and_every_snapshot_adds_up(
    slow: Served, fake_llm: FakeLLM
) -> None:
    """The audit's case: after a cancel, completed + failed + in progress + pending was not the total."""
    requested = fake_llm.request_count
    fake_llm.queue("ok", "ok", "timeout:30")  # two items complete, the third is held until the cancel
    async with slow.http() as http:
        batch = await create_batch(http, 6)
        before = await read_stream(http, batch["id"], query_id=0, stop=_third_started)
        await _until_requested(fake_llm, requested + 3)
        assert (await control(http, batch["id"], "cancel")).status_code == 200
        after = await read_stream(http, batch["id"], header_id=before.last_id)
        detail = (await http.get(f"/api/v1/generation/batch/{batch['id']}")).json()
    snapshots = [json.loads(e.data) for e in [*before.events, *after.events] if e.event == "batch.progress"]
    for snapshot in snapshots:
        assert sum(snapshot[name] for name in COUNTS) == snapshot["totalItems"] == 6, snapshot
    # "2 completed, 4 cancelled", not "4 pending": the one in progress and the three waiting were stopped.
    final = snapshots[-1]
    assert after.events[-1].event == "batch.complete" and after.events[-2].event == "batch.progress"
    assert {name: final[name] for name in COUNTS} == {
        "completedItems": 2,
        "failedItems": 0,
        "inProgressItems": 0,
        "pendingItems": 0,
        "cancelledItems": 4,
    }
    assert (final["percentage"], final["estimatedTimeRemainingMs"]) == (33, 0)
    complete = after.named("batch.complete")[0]
    assert (complete["status"], complete["completedItems"], complete["failedItems"]) == ("cancelled", 2, 0)
    assert detail["snapshot"] == final  # a reload shows the same


def _third_started(event: ServerSentEvent) -> bool:
    return event.event == "item.started" and json.loads(event.data)["itemIndex"] == 2


async def test_a_stream_resumed_while_the_batch_runs_sends_its_snapshot_after_the_replay(
    slow: Served, fake_llm: FakeLLM
) -> None:
    """The audit's case: a resumed stream's first snapshot had the counts of a later event than its id, so a
    client that added the replayed item events onto it counted them twice."""
    requested = fake_llm.request_count
    fake_llm.queue("ok", "ok", "timeout:30")  # two items complete, the third is held: the batch keeps running
    async with slow.http() as http:
        batch = await create_batch(http, 4)
        await read_stream(http, batch["id"], query_id=0, stop=_third_started)
        await _until_requested(fake_llm, requested + 3)
        # Dropped after its first event (the first item.started, id 1); EventSource resumes from there.
        resumed = await read_stream(http, batch["id"], header_id=1, stop=lambda e: e.event == "batch.progress")
        assert (await control(http, batch["id"], "cancel")).status_code == 200
    assert [(int(e.id), e.event) for e in resumed.events] == [
        (2, "item.completed"),
        (3, "item.started"),
        (4, "item.completed"),
        (5, "item.started"),
        (5, "batch.progress"),  # as of the last replayed event: nothing in it is counted twice
    ]
    snapshot = json.loads(resumed.events[-1].data)
    assert {name: snapshot[name] for name in COUNTS} == {
        "completedItems": 2,
        "failedItems": 0,
        "inProgressItems": 1,
        "pendingItems": 1,
        "cancelledItems": 0,
    }
