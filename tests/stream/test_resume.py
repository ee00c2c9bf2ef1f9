"""Resuming a stream: every logged event after the last id seen, exactly once, then live ones."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator

import httpx
import pytest

from livebatch.db import Database
from tests.checks import assert_consistent, event_log
from tests.stream.servers import Served
from tests.stream.support import Logged, create_batch, expected_counts, read_stream, stop_after

SEED = 20_261_125


@pytest.fixture
async def http(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with served.http() as client:
        yield client


async def test_drops_at_random_points_of_a_300_item_batch_lose_and_repeat_nothing(
    http: httpx.AsyncClient, served_db: Database
) -> None:
    rng = random.Random(SEED)
    batch = await create_batch(http, 300)
    received: list[Logged] = []
    snapshots: list[tuple[int, dict[str, int]]] = []
    last: int | None = None
    connections = 0
    while True:
        drop = stop_after(rng.randint(1, 60))  # events this connection reads before the client drops it
        if connections == 0:  # a page load: the id comes in the query, as EventSource cannot set headers
            got = await read_stream(http, batch["id"], query_id=0, stop=drop)
        else:  # EventSource's reconnect: the header
            got = await read_stream(http, batch["id"], header_id=last, stop=drop)
        connections += 1
        if got.status == 204:
            break
        assert got.status == 200
        received += got.logged
        # Every snapshot matches its id exactly, a resumed connection's first one too.
        snapshots += [(int(e.id), json.loads(e.data)) for e in got.events if e.event == "batch.progress"]
        last = got.last_id
    log = await event_log(served_db, batch["id"])
    assert log[-1][1] == "batch.complete"
    # The union of what every connection delivered is the log: same order, no gap, no repeat.
    assert [seq for seq, _, _ in received] == list(range(1, len(log) + 1))
    assert received == log
    for seq, snapshot in snapshots:
        assert {k: snapshot[k] for k in expected_counts(log, seq, 300)} == expected_counts(log, seq, 300)
    assert connections > 15, "the batch should have been resumed many times"
    await assert_consistent(served_db, batch["id"])


async def test_first_connection_with_query_id_replays_everything_after_it(
    http: httpx.AsyncClient, served_db: Database
) -> None:
    batch = await create_batch(http, 8)
    await read_stream(http, batch["id"])  # until it is over
    log = await event_log(served_db, batch["id"])
    middle = len(log) // 2
    got = await read_stream(http, batch["id"], query_id=middle)
    # The replay first, with the reconnection delay a new stream's first snapshot carries; the batch as it is
    # now would be newer than `middle`, so its snapshot follows the replay.
    assert (got.events[0].event, int(got.events[0].id), got.events[0].retry) == (log[middle][1], middle + 1, 2000)
    assert got.logged == log[middle:]


@pytest.mark.parametrize("how", ["header", "query"])
async def test_a_resumed_streams_first_snapshot_is_as_of_its_id_so_replayed_events_count_once(
    http: httpx.AsyncClient, served_db: Database, how: str
) -> None:
    """Seen as a first snapshot with id 188 and the counts of 192: a client that added the replayed item events
    onto it counted them twice. Every snapshot describes exactly the events up to its id, so it comes after
    the replay (the batch row is as of the last event)."""
    batch = await create_batch(http, 8)
    await read_stream(http, batch["id"])  # until it is over
    log = await event_log(served_db, batch["id"])
    for resume_at in (0, 1, 4, len(log) // 2, len(log) - 2):
        if how == "header":
            got = await read_stream(http, batch["id"], header_id=resume_at)
        else:
            got = await read_stream(http, batch["id"], query_id=resume_at)
        assert got.logged == log[resume_at:]  # the replay itself is unchanged
        snapshots = [(int(e.id), json.loads(e.data)) for e in got.events if e.event == "batch.progress"]
        assert snapshots, "a resumed stream sends a snapshot"
        for seq, snapshot in snapshots:
            expected = expected_counts(log, seq, 8)
            assert {k: snapshot[k] for k in expected} == expected, (resume_at, seq)


async def test_header_id_wins_over_the_query_id_of_the_page_load(http: httpx.AsyncClient, served_db: Database) -> None:
    """EventSource keeps the page's URL (with the id it was loaded with) and sends the newer id as a header."""
    batch = await create_batch(http, 8)
    await read_stream(http, batch["id"])
    log = await event_log(served_db, batch["id"])
    got = await read_stream(http, batch["id"], query_id=2, header_id=len(log) - 3)
    assert got.logged == log[-3:]


async def test_reconnect_after_batch_complete_gets_204(http: httpx.AsyncClient, served_db: Database) -> None:
    batch = await create_batch(http, 4)
    first = await read_stream(http, batch["id"], query_id=0)
    assert first.complete
    for again in (
        await read_stream(http, batch["id"], header_id=first.last_id),
        await read_stream(http, batch["id"], query_id=first.last_id),
    ):
        assert (again.status, again.body) == (204, b"")
    # Without an id, a new viewer of the finished batch is shown its end: the last snapshot and
    # `batch.complete`, then the stream closes.
    viewer = await read_stream(http, batch["id"], stop=lambda _: False)
    assert [e.event for e in viewer.events][-2:] == ["batch.progress", "batch.complete"]
    assert viewer.logged == (await event_log(served_db, batch["id"]))[-1:]


@pytest.mark.parametrize("last_id", ["-1", "abc", "1.5", "9" * 19, "999999"])
async def test_a_last_event_id_that_names_no_event_is_refused(http: httpx.AsyncClient, last_id: str) -> None:
    batch = await create_batch(http, 2)
    for got in (
        await read_stream(http, batch["id"], header_id=last_id),
        await read_stream(http, batch["id"], query_id=last_id),
    ):
        assert got.status == 422
        assert json.loads(got.body)["error"]["code"] == "VALIDATION_ERROR"
