"""A reconnect storm: hundreds of clients follow a running batch, the server is killed (SIGKILL) and
started again on the same address, and every client reconnects at once with its `Last-Event-ID`. The
server survives the storm (no 5xx, no client refused), and every client ends with exactly the event log:
no gap, no repeat, in order."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx

from livebatch.db import Database
from tests.checks import assert_consistent, event_log
from tests.conftest import Person, SettingsFactory, batch_body
from tests.reliability.conftest import Serve
from tests.reliability.resources import resources
from tests.reliability.viewers import Viewer
from tests.scaled.conftest import wait_until

CLIENTS = 200
ITEMS = 60


async def test_hundreds_of_clients_reconnecting_at_once_after_a_restart_all_resume_with_no_gap(
    make_settings: SettingsFactory, serve: Serve, people: dict[str, Person], db: Database
) -> None:
    settings = make_settings(
        offline_latency_ms=40,
        batch_concurrency=4,
        lease_s=2.0,  # the killed server's attempts come back soon after the restart
        max_streams_per_user=CLIENTS + 10,
        heartbeat_s=5.0,
    )
    first = serve(settings)
    faculty = people["faculty"]
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=CLIENTS)
    timeout = httpx.Timeout(30, read=None)
    async with httpx.AsyncClient(
        base_url=first.base_url, headers=faculty.headers, limits=limits, timeout=timeout
    ) as http:
        response = await http.post("/api/v1/generation/batch", json=batch_body(ITEMS))
        assert response.status_code == 201, response.text
        batch_id = response.json()["id"]
        viewers = [Viewer(batch_id) for _ in range(CLIENTS)]
        following = [asyncio.create_task(v.follow(http, retry_s=0.05)) for v in viewers]
        try:
            await wait_until(
                lambda: _all(viewers, lambda v: len(v.logged) >= ITEMS // 4), timeout=90, what="every client a quarter"
            )
            assert first.process is not None
            first.process.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(first.process.wait, 10) == -signal.SIGKILL
            killed = time.monotonic()
            second = serve(settings, port=first.port)
            up = time.monotonic()
            await wait_until(
                lambda: _all(viewers, lambda v: bool(v.connected_at) and v.connected_at[-1] > killed),
                timeout=60,
                what="every client back",
            )
            storm_s = max(v.connected_at[-1] for v in viewers) - up
            async with asyncio.timeout(120):
                await asyncio.gather(*following)
            finished_s = time.monotonic() - up
            after = await resources(second.base_url)
        finally:
            for task in following:
                task.cancel()
            await asyncio.gather(*following, return_exceptions=True)

    log = await event_log(db, batch_id)
    batch = await assert_consistent(db, batch_id)
    assert batch.completed_items + batch.failed_items == ITEMS and log[-1][1] == "batch.complete"
    for viewer in viewers:
        assert viewer.unexpected == {}, f"the server refused or failed a reconnect: {viewer.statuses}"
        assert viewer.logged == log, "a client missed or repeated an event across the restart"
    assert (after.streams, after.subscribers) == (0, 0)
    assert " ERROR " not in second.log() and "Traceback" not in second.log(), second.log()
    refused = sum(v.transport_errors for v in viewers)
    print(
        f"\nreconnect storm: {CLIENTS} clients back on the restarted server {storm_s:.2f}s after it answered "
        f"(started {up - killed:.1f}s after the kill; {refused} refused attempts meanwhile); the batch ended "
        f"{finished_s:.1f}s after the restart; every client received the {len(log)} logged events once; "
        f"server after: {after}"
    )


async def _all(viewers: list[Viewer], condition: object) -> bool:
    assert callable(condition)
    return all(condition(v) for v in viewers)
