"""Under a server whose connection the stream cannot write to directly (here httpx's in-process ASGI
transport; under `livebatch serve`, uvicorn's httptools transport is written to), the stream goes through
ASGI `send`, once per flush tick: the same events, the same end."""

from __future__ import annotations

import httpx

from livebatch.app import create_app
from livebatch.parts import Parts
from tests.checks import event_log, wait_for_status
from tests.conftest import Person, batch_body
from tests.stream.support import logged, parse_sse, progress_url


async def test_a_stream_through_asgi_send_replays_the_log_and_ends(parts: Parts, people: dict[str, Person]) -> None:
    faculty = people["faculty"]
    app = create_app(parts=parts)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=faculty.headers) as http:
        created = await http.post("/api/v1/generation/batch", json=batch_body(5))
        assert created.status_code == 201, created.text
        batch_id = created.json()["id"]
        await wait_for_status(parts, batch_id)
        log = await event_log(parts.db, batch_id)

        # A new viewer of a finished batch: its last snapshot, then `batch.complete`, then the end.
        fresh = await http.get(progress_url(batch_id))
        assert fresh.status_code == 200
        assert fresh.headers["content-type"] == "text/event-stream; charset=utf-8"
        events = parse_sse(fresh.text)
        assert [e.event for e in events] == ["batch.progress", "batch.complete"]
        assert logged(events) == log[-1:]

        # Resumed from the first event: every later one once, in order, then the end.
        resumed = await http.get(progress_url(batch_id), headers={"Last-Event-ID": str(log[0][0])})
        assert resumed.status_code == 200
        assert logged(parse_sse(resumed.text)) == log[1:]
        assert parts.bus.subscriber_count == 0
