"""A graceful stop (SIGTERM) of a server that also does the work, in the middle of a batch, then a start
on the same database: the open stream ends cleanly, the attempts in flight finish before the process
exits, nothing is logged as an error, and the restarted server finishes the batch, the client resuming
with no gap."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx

from livebatch.db import Database
from tests.checks import assert_consistent, event_log, load_batch
from tests.conftest import Person, SettingsFactory, batch_body
from tests.reliability.conftest import Serve
from tests.scaled.conftest import assert_received_exactly_the_log, following, json_log_lines

ITEMS = 40


async def test_sigterm_mid_batch_then_restart_finishes_the_batch_with_no_attempt_lost(
    make_settings: SettingsFactory, serve: Serve, people: dict[str, Person], db: Database
) -> None:
    settings = make_settings(offline_latency_ms=150, batch_concurrency=4, shutdown_grace_s=1.0, log_format="json")
    first = serve(settings)
    faculty = people["faculty"]
    async with httpx.AsyncClient(base_url=first.base_url, headers=faculty.headers) as http:
        response = await http.post("/api/v1/generation/batch", json=batch_body(ITEMS))
    assert response.status_code == 201, response.text
    batch_id = response.json()["id"]

    async with following([first.base_url], faculty.token, batch_id) as follower:
        await follower.wait_for(lambda f: f.count("item.completed") >= ITEMS // 5, timeout=60, what="a fifth")
        assert first.process is not None
        first.process.terminate()
        signalled = time.monotonic()
        exit_code = await asyncio.to_thread(first.process.wait, 30)
        stopped_in = time.monotonic() - signalled
        stopped = await load_batch(db, batch_id)
        # Same port: the client reconnects to the address it knows, as a browser would.
        restarted = time.monotonic()
        serve(settings, port=first.port)
        async with asyncio.timeout(90):
            await follower.complete.wait()
        finished_in = time.monotonic() - restarted

    assert exit_code in (0, -signal.SIGTERM), first.log()  # uvicorn re-raises the signal once it has shut down
    assert follower.ends[0] == (first.base_url, "clean"), follower.ends
    # The attempts in flight were finished, not cut off: nothing was left in progress for a lease to end.
    assert stopped.in_progress_items == 0 and 0 < stopped.completed_items < ITEMS
    batch = await assert_consistent(db, batch_id)
    assert batch.completed_items == ITEMS
    assert [p for _, name, p in await event_log(db, batch_id) if name == "item.failed"] == []
    events = await assert_received_exactly_the_log(follower, db)
    entries = json_log_lines(first)
    assert [e for e in entries if e["level"] in ("error", "critical") or "exception" in e] == []
    assert any(e["message"] == "stopping: finishing the attempts in flight" for e in entries)
    print(
        f"\nSIGTERM mid-batch: exited in {stopped_in:.2f}s with {stopped.completed_items}/{ITEMS} done and none in "
        f"progress; the restarted server finished the batch {finished_in:.1f}s after its start; {events} events "
        "reached the client once each"
    )
