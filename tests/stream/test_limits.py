"""What a stream costs the server, bounded: streams per user, and database connections (on the
`constrained` server: three streams per user, one pooled connection)."""

from __future__ import annotations

import asyncio
import json

from livebatch.auth import COOKIE
from livebatch.db import Database
from tests.checks import assert_consistent, event_log
from tests.stream.conftest import STREAMS_PER_USER
from tests.stream.servers import Served
from tests.stream.support import (
    control,
    create_batch,
    metric,
    progress_url,
    read_stream,
    wait_for_metric,
)


async def test_a_user_may_open_only_so_many_streams_and_gets_each_slot_back(constrained: Served) -> None:
    async with constrained.http() as http:
        batch = await create_batch(http, 100)
        assert (await control(http, batch["id"], "pause")).status_code == 200

        async def hold() -> None:
            async with http.stream("GET", progress_url(batch["id"])) as response:
                assert response.status_code == 200
                lines = response.aiter_lines()  # kept: dropping the iterator would close the response
                await anext(lines)
                await asyncio.sleep(3600)  # until cancelled

        holders = [asyncio.create_task(hold()) for _ in range(STREAMS_PER_USER)]
        await wait_for_metric(http, "livebatch_open_streams", lambda n: n == STREAMS_PER_USER)
        third = await http.get(progress_url(batch["id"]))
        assert third.status_code == 429
        assert third.json()["error"]["code"] == "TOO_MANY_STREAMS"
        # Another user is not affected by this one's streams.
        async with constrained.http("other") as other:
            theirs = await create_batch(other, 1)
            assert (await read_stream(other, theirs["id"], query_id=0)).complete
        # Closing one gives its slot back.
        holders[0].cancel()
        await wait_for_metric(http, "livebatch_open_streams", lambda n: n == STREAMS_PER_USER - 1)
        got = await read_stream(http, batch["id"], stop=lambda e: e.event == "batch.progress")
        assert got.status == 200
        for holder in holders:
            holder.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
        await control(http, batch["id"], "cancel")


async def test_streams_hold_no_database_connection_while_they_wait(constrained: Served) -> None:
    """With one pooled connection, two streams, the API and the work itself all make progress: a
    stream takes a connection only for the moment it reads the log."""
    async with constrained.http() as http, constrained.database() as db:
        batch = await create_batch(http, 20)
        streams = [asyncio.create_task(read_stream(http, batch["id"], query_id=0, timeout=60)) for _ in range(2)]
        await wait_for_metric(http, "livebatch_bus_subscribers", lambda n: n == 2)
        assert (await http.get(f"/api/v1/generation/batch/{batch['id']}")).status_code == 200
        received = await asyncio.gather(*streams)
        log = await event_log(db, batch["id"])
        for stream in received:
            assert stream.logged == log
        assert (await http.get(f"/api/v1/generation/batch/{batch['id']}/items.jsonl")).text.count("\n") == 20
        assert await metric(http, "livebatch_open_streams") == 0
        await assert_consistent(db, batch["id"])


async def test_the_session_cookie_signs_in_reads_and_streams(served: Served, served_db: Database) -> None:
    faculty = served.people["faculty"]
    async with served.http(None, cookies={COOKIE: faculty.token}) as browser:
        async with served.http() as api:
            batch = await create_batch(api, 3)
        detail = await browser.get(f"/api/v1/generation/batch/{batch['id']}")
        assert detail.status_code == 200
        got = await read_stream(browser, batch["id"], query_id=detail.json()["lastEventId"])
        assert got.status == 200 and got.complete
        assert [json.loads(e.data) for e in got.events][-1]["status"] == "completed"
        assert got.logged == (await event_log(served_db, batch["id"]))[detail.json()["lastEventId"] :]
