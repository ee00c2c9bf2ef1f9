"""Operating a scaled-out deployment: an API instance stopped with SIGTERM ends its streams cleanly and the
client resumes on another instance with no gap; `/readyz` follows the database and Redis going away
and coming back; every process logs JSON lines when its stderr is not a terminal."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx

from livebatch.db import Database
from tests.checks import assert_consistent, event_log
from tests.conftest import Person, SettingsFactory, batch_body
from tests.scaled.conftest import (
    Cluster,
    RedisServer,
    TcpProxy,
    assert_received_exactly_the_log,
    following,
    json_log_lines,
    wait_until,
)
from tests.stream.support import expected_counts

ITEMS = 90


async def test_sigterm_ends_an_instance_streams_cleanly_and_the_client_resumes_elsewhere(
    make_settings: SettingsFactory, cluster: Cluster, people: dict[str, Person], db: Database
) -> None:
    settings = make_settings(
        offline_latency_ms=20, batch_concurrency=8, max_concurrency=8, shutdown_grace_s=2.0, log_format="auto"
    )
    faculty = people["faculty"]
    await cluster.start(settings, apis=2, workers=1)
    stopping, other = cluster.apis
    async with httpx.AsyncClient(base_url=stopping.base_url, headers=faculty.headers) as http:
        response = await http.post("/api/v1/generation/batch", json=batch_body(ITEMS))
    assert response.status_code == 201, response.text
    batch_id = response.json()["id"]

    async with following([stopping.base_url, other.base_url], faculty.token, batch_id) as follower:
        await follower.wait_for(lambda f: f.count("item.completed") >= ITEMS // 4, timeout=60, what="a quarter")
        assert stopping.process is not None
        stopping.process.terminate()
        signalled = time.monotonic()
        await follower.wait_for(lambda f: bool(f.ends), timeout=10, what="the stream to end")
        stream_ended_in = time.monotonic() - signalled
        exit_code = await asyncio.to_thread(stopping.process.wait, 15)
        stopped_in = time.monotonic() - signalled
        async with asyncio.timeout(90):
            await follower.complete.wait()

    assert follower.ends[0] == (stopping.base_url, "clean"), follower.ends
    assert exit_code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    switched = next(i for i, e in enumerate(follower.events) if e.instance == other.base_url)
    # The resumed stream replays what the batch did meanwhile, then sends its first snapshot, as of its id.
    first = next(e for e in follower.events[switched:] if e.name == "batch.progress")
    assert first.id is not None
    expected = expected_counts(await event_log(db, batch_id), first.id, ITEMS)
    assert {k: first.data[k] for k in expected} == expected
    assert follower.count("item.completed") > 0 and follower.events[-1].instance == other.base_url
    await assert_consistent(db, batch_id)
    events = await assert_received_exactly_the_log(follower, db)
    entries = json_log_lines(stopping)
    assert not [e for e in entries if e["level"] in ("error", "critical")], entries
    assert any(e["message"] == "Application shutdown complete." for e in entries)
    assert all("color_message" not in e for e in entries)
    print(
        f"\nSIGTERM: stream ended cleanly {stream_ended_in:.2f}s after the signal, process exited after "
        f"{stopped_in:.2f}s; {events} events, none missed or repeated across the switch"
    )


async def test_readyz_follows_the_database_and_redis(
    make_settings: SettingsFactory,
    cluster: Cluster,
    database_url: str,
    private_redis: RedisServer,
    pg_proxy: TcpProxy,
) -> None:
    through_proxy = database_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{pg_proxy.port}/")
    assert through_proxy != database_url
    settings = make_settings(database_url=through_proxy, redis_url=private_redis.url, log_format="auto")
    await cluster.start(settings, apis=1)
    (api,) = cluster.apis
    async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as http:

        async def ready_is(status: int) -> bool:
            response = await http.get("/readyz")
            return response.status_code == status

        async def readyz() -> dict[str, object]:
            body: dict[str, object] = (await http.get("/readyz")).json()
            return body

        assert await readyz() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}

        private_redis.kill()
        redis_down_in = await wait_until(lambda: ready_is(503), timeout=10, what="Redis down to show")
        body = await readyz()
        assert body["checks"] == {"database": "ok", "redis": body["checks"]["redis"]}  # type: ignore[index]
        assert str(body["checks"]["redis"]).startswith("unavailable")
        assert (await http.get("/healthz")).status_code == 200  # the process itself is fine
        private_redis.start()
        redis_back_in = await wait_until(lambda: ready_is(200), timeout=10, what="Redis back to show")

        await pg_proxy.cut()
        started = time.monotonic()
        response = await http.get("/readyz")
        db_probe_s = time.monotonic() - started
        assert response.status_code == 503
        assert str(response.json()["checks"]["database"]).startswith("unavailable")
        assert response.json()["checks"]["redis"] == "ok"
        metrics = await http.get("/metrics")  # this process's figures, without the database's
        assert metrics.status_code == 200
        assert "livebatch_open_streams" in metrics.text and "livebatch_items" not in metrics.text
        await pg_proxy.restore()
        db_back_in = await wait_until(lambda: ready_is(200), timeout=10, what="the database back to show")

    assert [e for e in json_log_lines(api) if e["level"] == "warning"]
    print(
        f"\n/readyz: Redis down seen in {redis_down_in:.2f}s, back in {redis_back_in:.2f}s; database probe "
        f"answered 503 in {db_probe_s:.2f}s, back in {db_back_in:.2f}s"
    )
