"""The brief's section 10, test for test, against `livebatch serve` on loopback with httpx + httpx-sse.

`BatchSSEService` (the first seven) and `BatchProgressController` (the last five) are one module here:
the stream endpoint is both.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from statistics import median
from typing import Any
from uuid import uuid4

import httpx
import jwt
import pytest
from httpx_sse import ServerSentEvent

from livebatch.auth import mint_token
from livebatch.clock import utcnow
from livebatch.config import Settings
from livebatch.db import Database
from tests.checks import assert_consistent, event_log, load_batch
from tests.conftest import Backend, Person
from tests.fakes.llm_server import FakeLLM
from tests.stream.servers import Served, serve
from tests.stream.support import (
    COMPLETE,
    ITEM_COMPLETED,
    ITEM_FAILED,
    ITEM_STARTED,
    SNAPSHOT,
    assert_error,
    control,
    create_batch,
    expected_counts,
    metric,
    parse_time,
    progress_url,
    read_stream,
    wait_for_metric,
)

SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "x-accel-buffering": "no",
}


HELD = 200  # items of the batch paused before its stream opens


@pytest.fixture
async def http(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with served.http() as client:
        yield client


@pytest.fixture(scope="module")
def scripted(backend: Backend, tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM) -> Iterator[Served]:
    """A server whose provider is the fake LLM: one item at a time, each answer as the test scripts it."""
    with serve(
        backend,
        tmp_path_factory.mktemp("scripted"),
        provider="openai",
        openai_base_url=fake_llm.base_url,
        openai_timeout_s=0.5,
        batch_concurrency=1,
        max_attempts=3,
    ) as server:
        yield server


# --- BatchSSEService --------------------------------------------------------------------------------------


async def test_creates_sse_connection_with_correct_headers(served: Served, http: httpx.AsyncClient) -> None:
    batch = await create_batch(http, 40)
    await wait_for_metric(http, "livebatch_bus_subscribers", lambda n: n == 0)
    async with http.stream("GET", progress_url(batch["id"])) as response:
        assert response.status_code == 200
        assert {k: response.headers[k] for k in SSE_HEADERS} == SSE_HEADERS
        lines = response.aiter_lines()
        # The connection opens with the snapshot's id and the reconnection delay EventSource should use.
        assert (await anext(lines)).startswith("id: ")
        assert await anext(lines) == "retry: 2000"
        assert await anext(lines) == "event: batch.progress"
        # While it is open it holds one subscription to the fan-out, and one stream slot.
        assert await metric(http, "livebatch_bus_subscribers") == 1
        assert await metric(http, "livebatch_open_streams") == 1
    # Closed by the client: the server notices and lets go of both.
    await wait_for_metric(http, "livebatch_bus_subscribers", lambda n: n == 0)
    assert await metric(http, "livebatch_open_streams") == 0
    await control(http, batch["id"], "cancel")


async def test_emits_batch_progress_events_with_current_snapshot(http: httpx.AsyncClient, served_db: Database) -> None:
    # Big enough that it is still running when the pause lands (40 items were sometimes done by then), and
    # held until the stream is open, so that a first connection (no id: every snapshot exact) finds it running
    # and sees it through, however busy the machine.
    batch = await create_batch(http, HELD)
    assert (await control(http, batch["id"], "pause")).status_code == 200

    resumed: list[str] = []

    async def resume_once_open(event: ServerSentEvent) -> None:
        if not resumed:  # the first event: the snapshot on connect
            resumed.append(event.event)
            assert (await control(http, batch["id"], "resume")).status_code == 200

    received = await read_stream(http, batch["id"], on_event=resume_once_open)
    assert resumed == ["batch.progress"]
    log = await event_log(served_db, batch["id"])
    snapshots = [(int(e.id), json.loads(e.data)) for e in received.events if e.event == "batch.progress"]
    assert len(snapshots) >= 2
    for seq, snapshot in snapshots:
        assert set(snapshot) == SNAPSHOT
        assert snapshot["batchId"] == batch["id"]
        # Each snapshot is the batch as of the event whose id it carries: counts from the log agree.
        assert {k: snapshot[k] for k in expected_counts(log, seq, HELD)} == expected_counts(log, seq, HELD)
        assert isinstance(snapshot["throughputRate"], float)
        assert isinstance(snapshot["estimatedTimeRemainingMs"], int)
    # Coalesced: never more snapshots than there were changes to describe (plus connect and end).
    assert len(snapshots) <= len(received.logged) + 2
    # The one sent right before `batch.complete` is the final state, which the REST resource also shows.
    assert received.events[-2].event == "batch.progress"
    final = snapshots[-1][1]
    assert final["completedItems"] == HELD and final["percentage"] == 100 and final["pendingItems"] == 0
    detail = (await http.get(f"/api/v1/generation/batch/{batch['id']}")).json()
    assert detail["snapshot"] == final
    # A new viewer of the finished batch is shown that same snapshot first.
    again = await read_stream(http, batch["id"])
    assert json.loads(again.events[0].data) == final


async def test_emits_item_started_when_batch_item_begins(http: httpx.AsyncClient, served_db: Database) -> None:
    batch = await create_batch(http, 6)
    received = await read_stream(http, batch["id"], query_id=0)
    started = received.named("item.started")
    assert sorted(s["itemIndex"] for s in started) == list(range(6))
    ids_by_index = {s["itemIndex"]: s["itemId"] for s in started}
    for payload in started:
        assert set(payload) == ITEM_STARTED
        parse_time(payload["startedAt"])
    # Each item is announced as started before it completes, and started when its attempt began.
    order = [(name, p["itemId"]) for _, name, p in received.logged if name.startswith("item.")]
    completed = {p["itemId"]: p for p in received.named("item.completed")}
    for payload in started:
        item_id = payload["itemId"]
        assert order.index(("item.started", item_id)) < order.index(("item.completed", item_id))
        assert parse_time(payload["startedAt"]) <= parse_time(completed[item_id]["completedAt"])
    items = (await http.get(f"/api/v1/generation/batch/{batch['id']}/items")).json()["items"]
    assert {i["itemIndex"]: i["itemId"] for i in items} == ids_by_index
    await assert_consistent(served_db, batch["id"])


async def test_emits_item_completed_with_generation_id_and_duration(
    served: Served, http: httpx.AsyncClient, served_db: Database
) -> None:
    batch = await create_batch(http, 6)
    received = await read_stream(http, batch["id"], query_id=0)
    completed = received.named("item.completed")
    started = {p["itemId"]: p for p in received.named("item.started")}
    assert len(completed) == 6
    generated = (await http.get(f"/api/v1/generation/batch/{batch['id']}/items")).json()["items"]
    generation_ids = {g["itemId"]: g["generationId"] for g in generated}
    latency_floor = served.settings.offline_latency_ms // 2  # the offline provider waits 0.5-1.5 x the mean
    for payload in completed:
        assert set(payload) == ITEM_COMPLETED
        # The generation id names the stored item one can fetch.
        assert payload["generationId"] == generation_ids[payload["itemId"]]
        # The duration is the attempt's, from its start to its completion.
        took = parse_time(payload["completedAt"]) - parse_time(started[payload["itemId"]]["startedAt"])
        assert abs(payload["durationMs"] - took / timedelta(milliseconds=1)) <= 1
        assert payload["durationMs"] >= latency_floor
    await assert_consistent(served_db, batch["id"])


async def test_emits_item_failed_with_error_message_and_retry_info(scripted: Served, fake_llm: FakeLLM) -> None:
    # One item, three attempts: a provider timeout, a server error, then a rate limit; none succeeds.
    fake_llm.queue("timeout:5", "503", "429")
    async with scripted.http() as http:
        batch = await create_batch(http, 1)
        received = await read_stream(http, batch["id"], query_id=0)
    failed = received.named("item.failed")
    for payload in failed:
        assert set(payload) == ITEM_FAILED
    assert [(f["retryCount"], f["willRetry"], f["errorKind"]) for f in failed] == [
        (1, True, "timeout"),
        (2, True, "provider_error"),
        (3, False, "rate_limited"),
    ]
    assert [f["errorMessage"] for f in failed] == [
        "LLM provider timeout after 0.5s",
        "Provider error: HTTP 503: fake 503",
        "Rate limited by the provider (HTTP 429)",
    ]
    # Every attempt was announced, and a retried item is pending again in the snapshot after its failure.
    assert [name for _, name, _ in received.logged] == [
        *("item.started", "item.failed") * 3,
        "batch.complete",
    ]
    complete = received.named("batch.complete")[0]
    assert (complete["status"], complete["completedItems"], complete["failedItems"]) == ("failed", 0, 1)
    async with scripted.database() as db:
        log = await event_log(db, batch["id"])
        await assert_consistent(db, batch["id"])
    first_failure = next(seq for seq, name, _ in log if name == "item.failed")
    after_first = [
        json.loads(e.data) for e in received.events if e.event == "batch.progress" and int(e.id) == first_failure
    ]
    for snapshot in after_first:
        assert (snapshot["pendingItems"], snapshot["failedItems"]) == (1, 0)


async def test_emits_batch_complete_when_all_items_finish(http: httpx.AsyncClient, served_db: Database) -> None:
    batch = await create_batch(http, 5)
    stream_ended = await read_stream(http, batch["id"], stop=lambda _: False)  # read until the server ends it
    assert stream_ended.events[-1].event == "batch.complete"
    assert stream_ended.events[-2].event == "batch.progress"  # always right before the end
    complete = json.loads(stream_ended.events[-1].data)
    assert set(complete) == COMPLETE
    assert complete == {
        "batchId": batch["id"],
        "status": "completed",
        "totalItems": 5,
        "completedItems": 5,
        "failedItems": 0,
        "totalDurationMs": complete["totalDurationMs"],
    }
    stored = await load_batch(served_db, batch["id"])
    assert stored.started_at is not None and stored.completed_at is not None
    took = (stored.completed_at - stored.started_at) / timedelta(milliseconds=1)
    assert abs(complete["totalDurationMs"] - took) <= 1
    # `batch.complete` is sent once, after every item finished.
    log = await event_log(served_db, batch["id"])
    assert [name for _, name, _ in log].count("batch.complete") == 1 and log[-1][1] == "batch.complete"
    assert len([1 for _, name, _ in log if name == "item.completed"]) == 5
    # A reconnect that has seen it is told there is nothing more: 204, which stops EventSource.
    reconnect = await read_stream(http, batch["id"], header_id=stream_ended.last_id)
    assert reconnect.status == 204


async def test_calculates_throughput_rate_from_rolling_average_of_last_10(scripted: Served, fake_llm: FakeLLM) -> None:
    # Five slow items, then ten fast ones: after them, the last ten completions are all fast ones.
    fake_llm.queue(*["timeout:0.25"] * 5)
    async with scripted.http() as http:
        batch = await create_batch(http, 15)
        received = await read_stream(http, batch["id"], query_id=0)
        detail = (await http.get(f"/api/v1/generation/batch/{batch['id']}")).json()
    start = parse_time(detail["started_at"])
    done_at = {seq: parse_time(p["completedAt"]) for seq, name, p in received.logged if name == "item.completed"}

    def rolling_rate(upto: int) -> float:
        """Items per minute over the last 10 completions up to seq `upto`: k / (c_k - c_0)."""
        times = [start, *(t for seq, t in sorted(done_at.items()) if seq <= upto)][-11:]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / ((times[-1] - times[0]) / timedelta(minutes=1))

    snapshots = [(int(e.id), json.loads(e.data)) for e in received.events if e.event == "batch.progress"]
    prior_ms = scripted.settings.effective_item_prior_ms  # one item at a time: one prior per item left
    checked = 0
    for seq, snapshot in snapshots:  # each is as of its id, a resumed connection's first one too
        expected = rolling_rate(seq)
        assert snapshot["throughputRate"] == pytest.approx(expected, rel=0.03, abs=0.02), seq
        left = snapshot["pendingItems"] + snapshot["inProgressItems"]
        if expected and left:
            eta = left / snapshot["throughputRate"] * 60_000
            assert snapshot["estimatedTimeRemainingMs"] == pytest.approx(eta, rel=0.03)
            checked += 1
        elif left:  # before the first completion: the prior's estimate, never 0
            assert snapshot["estimatedTimeRemainingMs"] == left * prior_ms
        else:
            assert snapshot["estimatedTimeRemainingMs"] == 0
    assert checked >= 3
    # The final rate is the fast items' alone; an average over the whole batch would be far lower.
    final = snapshots[-1][1]["throughputRate"]
    whole_batch = 15 / ((max(done_at.values()) - start) / timedelta(minutes=1))
    assert final > 1.5 * whole_batch
    async with scripted.database() as db:
        await assert_consistent(db, detail["id"])


# --- BatchProgressController -------------------------------------------------------------------------------


def _tokens(settings: Settings, person: Person) -> dict[str, dict[str, str]]:
    now = utcnow()
    claims: dict[str, Any] = {"sub": str(person.user.id), "role": "faculty", "exp": now + timedelta(hours=1)}
    return {
        "missing": {},
        "not a bearer": {"Authorization": f"Basic {person.token}"},
        "malformed": {"Authorization": "Bearer not.a.jwt"},
        "expired": {
            "Authorization": "Bearer "
            + mint_token(settings, person.user, now=now - timedelta(hours=2), ttl=timedelta(hours=1))
        },
        "wrong signature": {"Authorization": "Bearer " + jwt.encode(claims, "another-secret-" * 4, algorithm="HS256")},
        "alg none": {"Authorization": "Bearer " + jwt.encode(claims, "", algorithm="none")},
        "unknown user": {
            "Authorization": "Bearer "
            + jwt.encode(dict(claims, sub=str(uuid4())), settings.effective_jwt_secret, algorithm="HS256")
        },
    }


@pytest.mark.parametrize(
    "case", ["missing", "not a bearer", "malformed", "expired", "wrong signature", "alg none", "unknown user"]
)
async def test_rejects_unauthenticated_request_401(served: Served, http: httpx.AsyncClient, case: str) -> None:
    batch = await create_batch(http, 1)
    headers = _tokens(served.settings, served.people["faculty"])[case]
    async with served.http(None) as anonymous:
        response = await anonymous.get(progress_url(batch["id"]), headers=headers)
    assert_error(response, 401, "UNAUTHORIZED")


@pytest.mark.parametrize("who", ["other", "student"])
async def test_rejects_non_owner_access_403(served: Served, http: httpx.AsyncClient, who: str) -> None:
    batch = await create_batch(http, 1)
    async with served.http(who) as intruder:
        response = await intruder.get(progress_url(batch["id"]), params={"lastEventId": "0"})
    assert_error(response, 403, "FORBIDDEN")
    assert batch["id"] not in response.text


@pytest.mark.parametrize("batch_id", ["7d2c5a0e-3b7e-4a53-9d6c-0d1b7c4f2e11", "not-a-batch-id", "12345"])
async def test_returns_404_for_non_existent_batch(http: httpx.AsyncClient, batch_id: str) -> None:
    response = await http.get(progress_url(batch_id))
    assert_error(response, 404, "NOT_FOUND")


async def test_sets_correct_sse_headers_content_type_cache_control_connection(http: httpx.AsyncClient) -> None:
    batch = await create_batch(http, 3)
    received = await read_stream(http, batch["id"], query_id=0)
    assert received.status == 200
    assert {k: received.headers[k] for k in SSE_HEADERS} == SSE_HEADERS
    # Not `no-store` (sse-starlette's default): the contract says no-cache. No compression either,
    # which would make proxies buffer.
    assert "content-encoding" not in received.headers
    # The reconnect after the end and every error are plain responses, never a stream.
    reconnect = await read_stream(http, batch["id"], header_id=received.last_id)
    assert reconnect.status == 204 and "text/event-stream" not in reconnect.headers.get("content-type", "")
    bad = await http.get(progress_url(batch["id"]), headers={"Last-Event-ID": "yesterday"})
    assert_error(bad, 422, "VALIDATION_ERROR")


async def test_sends_heartbeat_every_15s(served: Served, http: httpx.AsyncClient) -> None:
    """Every 15 s by default; the shared test server is set to 0.5 s so that the test takes seconds."""
    assert Settings.model_fields["heartbeat_s"].default == 15.0
    interval = served.settings.heartbeat_s
    batch = await create_batch(http, 200)
    assert (await control(http, batch["id"], "pause")).status_code == 200  # a quiet stream: only heartbeats
    frames: list[dict[str, str]] = []
    async with asyncio.timeout(interval * 6 + 20):
        async with http.stream("GET", progress_url(batch["id"])) as response:
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                    continue
                if fields.get("event") == "heartbeat":
                    frames.append(fields)
                    if len(frames) == 6:
                        break
                fields = {}
    await control(http, batch["id"], "cancel")
    for heartbeat in frames:
        assert set(heartbeat) == {"event", "data"}  # no id: a heartbeat is not progress
        assert set(json.loads(heartbeat["data"])) == {"timestamp"}
    sent = [parse_time(json.loads(h["data"])["timestamp"]) for h in frames]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(sent)]
    # A timer at the configured interval (not the 15 s default, not "after silence"): never early
    # (the timestamps are in milliseconds), and late only by what a loaded machine adds.
    assert min(gaps) >= interval - 0.002
    assert median(gaps) <= interval + 1
    assert max(gaps) <= interval + 3
