"""Many streams on one batch: each gets every event, and each gives its subscription back when it ends."""

from __future__ import annotations

import asyncio

import httpx

from livebatch.db import Database
from tests.checks import event_log
from tests.stream.servers import Served
from tests.stream.support import Received, control, create_batch, metric, read_stream, wait_for_metric

STREAMS = 200


async def _open_many(http: httpx.AsyncClient, batch_id: str) -> list[asyncio.Task[Received]]:
    """STREAMS streams on the batch, each from the start of its log, once the server holds them all."""
    readers = [asyncio.create_task(read_stream(http, batch_id, query_id=0, timeout=120)) for _ in range(STREAMS)]
    await wait_for_metric(http, "livebatch_bus_subscribers", lambda n: n == STREAMS, timeout=60)
    assert await metric(http, "livebatch_open_streams") == STREAMS
    return readers


async def test_200_streams_all_receive_every_event_and_free_their_subscriptions(
    served: Served, served_db: Database
) -> None:
    async with served.http() as http:
        await wait_for_metric(http, "livebatch_bus_subscribers", lambda n: n == 0)
        batch = await create_batch(http, 20)
        assert (await control(http, batch["id"], "pause")).status_code == 200

        # Clients that go away: every subscription is freed as soon as their connections close.
        readers = await _open_many(http, batch["id"])
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await wait_for_metric(http, "livebatch_bus_subscribers", lambda n: n == 0)
        assert await metric(http, "livebatch_open_streams") == 0

        # Clients that stay: the batch runs on while 200 streams watch it live, and each sees all of it.
        readers = await _open_many(http, batch["id"])
        assert (await control(http, batch["id"], "resume")).status_code == 200
        received = await asyncio.gather(*readers)
        log = await event_log(served_db, batch["id"])
        assert log[-1][1] == "batch.complete"
        for stream in received:
            assert stream.status == 200
            assert stream.logged == log
        # The server ended every stream after `batch.complete`, and let go of each subscription.
        await wait_for_metric(http, "livebatch_bus_subscribers", lambda n: n == 0)
        assert await metric(http, "livebatch_open_streams") == 0
