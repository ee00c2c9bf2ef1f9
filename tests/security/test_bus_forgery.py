"""Whoever can publish on the Redis fan-out channel must not be able to put events into live streams: a
forged `batch.complete` (unsigned, signed with another key, or signed but with a name or an id that is not an
event's) published on `<prefix>:events` of a real Redis, while a stream of a real server is open, never
reaches it. The stream then carries exactly the batch's log, and the server says it dropped them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from httpx_sse import ServerSentEvent

from livebatch.db import Database
from livebatch.events.redis_bus import bus_key, seal
from tests.checks import event_log, load_batch, wait_until
from tests.conftest import LiveFactory, Person, SettingsFactory
from tests.stream.support import control, create_batch, read_stream

pytestmark = pytest.mark.usefixtures("scaled_only")

FORGED_ID = 424242


@pytest.fixture
def scaled_only(backend: Any) -> None:
    if not backend.scaled:
        pytest.skip("the fan-out between processes is Redis's: runs with --backend=scaled")


def _body(batch_id: str, events: list[list[Any]]) -> bytes:
    return json.dumps({"t": batch_id, "e": events, "s": None}).encode()


async def test_forged_fan_out_messages_never_reach_a_live_stream(
    make_settings: SettingsFactory, live_process: LiveFactory, db: Database, people: dict[str, Person]
) -> None:
    settings = make_settings(offline_latency_ms=300)  # slow enough to pause before the batch is over
    live_server = live_process(settings, "serve", "--host", "127.0.0.1", "--port", "0", "--worker", port=0)
    faculty = people["faculty"]
    async with httpx.AsyncClient(base_url=live_server.base_url, headers=faculty.headers, timeout=30) as http:
        batch = await create_batch(http, 10)
        batch_id = batch["id"]
        assert (await control(http, batch_id, "pause")).status_code == 200

        async def settled() -> bool:
            return (await load_batch(db, batch_id)).in_progress_items == 0

        await wait_until(settled)
        start = (await load_batch(db, batch_id)).last_seq
        fake_complete = json.dumps(
            {
                "batchId": batch_id,
                "status": "completed",
                "totalItems": 10,
                "completedItems": 10,
                "failedItems": 0,
                "totalDurationMs": 1,
            }
        )
        right, wrong = bus_key(settings.effective_jwt_secret), bus_key("another-deployment-secret-0123456789abcdef")
        forged = [
            _body(batch_id, [[start + 1, "batch.complete", fake_complete]]),  # unsigned, the next seq
            _body(batch_id, [[FORGED_ID, "batch.complete", fake_complete]]),  # unsigned, an id of its own
            b"0" * 64 + b"." + _body(batch_id, [[start + 1, "batch.complete", fake_complete]]),  # a made-up MAC
            seal(wrong, _body(batch_id, [[start + 1, "batch.complete", fake_complete]])),  # another key
            # Signed with this deployment's key, yet not events: a name that is none, ids that are no seq.
            seal(right, _body(batch_id, [[start + 1, f"batch.complete\nid: {FORGED_ID}", fake_complete]])),
            seal(right, _body(batch_id, [[f"{start + 1}\nid: {FORGED_ID}", "batch.complete", fake_complete]])),
            seal(right, _body(batch_id, [[True, "batch.complete", fake_complete]])),
            seal(right, _body(batch_id, [[float(start + 1), "batch.complete", fake_complete]])),
        ]
        opened = asyncio.Event()
        events: list[ServerSentEvent] = []

        async def on_event(event: ServerSentEvent) -> None:
            events.append(event)
            opened.set()

        reading = asyncio.create_task(read_stream(http, batch_id, on_event=on_event, timeout=90))
        async with asyncio.timeout(30):
            await opened.wait()  # its first snapshot: the stream is subscribed
        publisher = redis.from_url(settings.redis_url or "")
        try:
            for message in forged:
                await publisher.publish(f"{settings.redis_prefix}:events", message)
        finally:
            await publisher.aclose()
        # Published before the resume, on the one channel: the server reads them before any real event.
        assert (await control(http, batch_id, "resume")).status_code == 200
        received = await reading

    assert received.status == 200
    ids = [int(e.id) for e in events if e.id]
    last_seq = (await load_batch(db, batch_id)).last_seq
    assert FORGED_ID not in ids and all(i <= last_seq for i in ids), ids
    log = await event_log(db, batch_id)
    logged = [
        (int(e.id), e.event, json.loads(e.data)) for e in events if e.event not in ("batch.progress", "heartbeat")
    ]
    assert logged == [entry for entry in log if entry[0] > start], "the stream carried something not in the log"
    assert logged[-1][1] == "batch.complete" and logged[-1][2]["totalDurationMs"] != 1
    assert "dropped" in live_server.log() and "fan-out message" in live_server.log()
