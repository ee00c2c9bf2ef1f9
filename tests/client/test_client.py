"""`livebatch.client`: follows a batch through dropped connections, and says what went wrong."""

from __future__ import annotations

import pytest

from livebatch.client import ApiError, BatchClient, StreamEvent
from tests.checks import event_log
from tests.client.conftest import Proxy
from tests.conftest import COURSE
from tests.stream.servers import Served
from tests.stream.support import UNLOGGED


async def test_follow_resumes_after_dropped_connections_and_misses_nothing(served: Served, proxy: Proxy) -> None:
    token = served.people["faculty"].token
    async with BatchClient(proxy.url, token, reconnect_delay_s=0.05) as client:
        # A third of the attempts fail on this server, on purpose: the error-rate guard could pause the batch.
        batch = await client.create_batch(COURSE, 40, error_rate_guard=False)
        events: list[StreamEvent] = []
        async for event in client.follow(batch["id"], last_event_id=0):
            events.append(event)
            if len(events) in (10, 40):  # the network drops every connection, mid-stream
                proxy.cut()
        assert (client.reconnects, proxy.cuts) == (2, 2)
    assert events[-1].name == "batch.complete"
    async with served.database() as db:
        log = await event_log(db, batch["id"])
    assert [(e.id, e.name, e.data) for e in events if e.name not in UNLOGGED] == log


async def test_follow_of_a_finished_batch_ends_at_once(served: Served) -> None:
    async with BatchClient(served.base_url, served.people["faculty"].token) as client:
        batch = await client.create_batch(COURSE, 2)
        seen = [e async for e in client.follow(batch["id"], last_event_id=0)]
        assert seen[-1].name == "batch.complete"
        # From the last id: the server's 204, and no reconnecting.
        assert [e async for e in client.follow(batch["id"], last_event_id=seen[-1].id)] == []
        assert client.reconnects == 0


@pytest.mark.parametrize(("who", "status", "code"), [("other", 403, "FORBIDDEN"), ("student", 403, "FORBIDDEN")])
async def test_follow_raises_the_api_error(served: Served, who: str, status: int, code: str) -> None:
    async with BatchClient(served.base_url, served.people["faculty"].token) as owner:
        batch = await owner.create_batch(COURSE, 1)
    async with BatchClient(served.base_url, served.people[who].token) as client:
        with pytest.raises(ApiError) as raised:
            async for _ in client.follow(batch["id"]):
                pass
    assert (raised.value.status_code, raised.value.code) == (status, code)
    async with BatchClient(served.base_url, "not-a-token") as client:
        with pytest.raises(ApiError) as raised:
            await client.get_batch(batch["id"])
    assert (raised.value.status_code, raised.value.code) == (401, "UNAUTHORIZED")
