"""A thousand progress streams opened and dropped in a loop leave nothing behind in the server: no file
descriptor, asyncio task, subscription to the fan-out or stream slot, and no memory growth beyond a bound.

Clients drop the way real ones do: as soon as the request is sent (a tab closed while loading), after the
first snapshot (a page left at once), and in the middle of replaying a long log (a reconnect cut short).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx

from tests.conftest import LiveProcess, Person, SettingsFactory, batch_body
from tests.reliability.conftest import Serve
from tests.reliability.resources import settled
from tests.scaled.conftest import wait_until
from tests.stream.support import progress_url

STREAMS = 1000
AT_ONCE = 25
WARM_UP = 50
RSS_BOUND_MB = 25.0  # what 1000 streams may leave in the allocator's pools; a leak of each would exceed it


async def _drop_after(server: LiveProcess, target: str, headers: dict[str, str], events: int) -> None:
    """One stream on a raw connection (cheap enough for a thousand): send the request, read until `events`
    events have arrived (0: read nothing), and close the connection."""
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode())
        await writer.drain()
        received = b""
        while received.count(b"\nevent: ") < events:
            chunk = await reader.read(65536)
            assert chunk, f"the server ended the stream early: {received[:300]!r}"
            received += chunk
        assert not events or received.startswith(b"HTTP/1.1 200"), received[:300]
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _churn(server: LiveProcess, person: Person, batch_id: str, count: int) -> None:
    path = progress_url(batch_id)
    slots = asyncio.Semaphore(AT_ONCE)

    async def one(i: int) -> None:
        async with slots:
            kind = i % 3
            if kind == 0:  # a tab closed while loading
                await _drop_after(server, f"{path}?lastEventId=0", person.headers, events=0)
            elif kind == 1:  # a page left at once
                await _drop_after(server, path, person.headers, events=1)
            else:  # a reconnect cut short in the middle of its replay
                await _drop_after(server, f"{path}?lastEventId=0", person.headers, events=20)

    await asyncio.gather(*(one(i) for i in range(count)))


async def test_a_thousand_dropped_streams_leak_no_fd_task_subscription_or_memory(
    make_settings: SettingsFactory, serve: Serve, people: dict[str, Person]
) -> None:
    settings = make_settings(max_streams_per_user=AT_ONCE * 2, heartbeat_s=5.0, batch_concurrency=8)
    server = serve(settings)
    faculty = people["faculty"]
    limits = httpx.Limits(max_connections=AT_ONCE * 2, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.base_url, headers=faculty.headers, limits=limits, timeout=30) as http:
        # A batch with a long log, paused, so that every stream replays it and then stays open until dropped.
        batch = (await http.post("/api/v1/generation/batch", json=batch_body(60))).json()
        await _wait_for_completed(http, batch["id"], 30)
        assert (await http.post(f"/api/v1/generation/batch/{batch['id']}/pause")).status_code == 200

        await _churn(server, faculty, batch["id"], WARM_UP)  # pools and caches reach their size
        before = await settled(server.base_url)
        started = time.monotonic()
        await _churn(server, faculty, batch["id"], STREAMS)
        churned_in = time.monotonic() - started
        after = await settled(server.base_url)
        assert (await http.get(f"/api/v1/generation/batch/{batch['id']}")).status_code == 200  # still serving
        await http.post(f"/api/v1/generation/batch/{batch['id']}/cancel")

    assert (after.subscribers, after.streams) == (0, 0)
    assert after.tasks <= before.tasks, f"tasks leaked: {before} -> {after}"
    assert after.fds <= before.fds + 2, f"file descriptors leaked: {before} -> {after}"
    assert after.rss_mb - before.rss_mb < RSS_BOUND_MB, f"memory grew: {before} -> {after}"
    print(f"\n{STREAMS} streams dropped in {churned_in:.1f}s, {AT_ONCE} at a time; before: {before}; after: {after}")


async def _wait_for_completed(http: httpx.AsyncClient, batch_id: str, completed: int) -> None:
    async def enough() -> bool:
        return int((await http.get(f"/api/v1/generation/batch/{batch_id}")).json()["completed_items"]) >= completed

    await wait_until(enough, timeout=60, what=f"{completed} items completed")
