"""The soak test: 20 batches at once, each watched by 5 viewers (real SSE clients, two of them dropping
and resuming at random), against a real server whose provider fails 20% of its calls in every way it can.
At the end every batch is consistent (counters, items, generated rows, event log), every attempt is in the
log as one request to the provider, every viewer received exactly its batch's log, and the server holds
no more file descriptors, tasks, subscriptions or memory than before, within a stated bound."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import httpx

from livebatch.db import Database
from tests.batches.ledger import assert_attempts_accounted
from tests.checks import assert_consistent, event_log
from tests.conftest import Person, SettingsFactory, batch_body
from tests.fakes.llm_server import FakeLLM
from tests.reliability.conftest import Serve
from tests.reliability.resources import pooled_connections, server_ports, settled, tasks_back_to
from tests.reliability.viewers import Viewer
from tests.scaled.conftest import json_log_lines

BATCHES = 20
VIEWERS = 5
DROPPING_VIEWERS = 2  # of the 5: each of their connections ends after a random number of events
ITEMS = 20
FAILURE_RATE = 0.2
FAILURES = ("500", "503", "429", "reset", "reset-body", "timeout:2", "malformed", "schema", "duplicate")
KINDS = {  # the `errorKind` each failure of the provider becomes
    "provider_error": ("500", "503", "reset", "reset-body"),
    "rate_limited": ("429",),
    "timeout": ("timeout:2",),
    "validation": ("malformed", "schema", "duplicate"),
}
MAX_ATTEMPTS = 3
RSS_BOUND_MB = 30.0
POOLED_REDIS_BOUND = 32  # the broker's and the fan-out's connections at 16 items in flight and 100 viewers
SEED = 20_261_125


async def _watch_batches(http: httpx.AsyncClient, count: int, items: int, seed: int) -> list[tuple[str, list[Viewer]]]:
    """Creates `count` batches at once, follows each with VIEWERS viewers to its end."""
    # A fifth of the calls fail at random: 11 of 20 in a row would be rare, but with 20 batches not rare enough,
    # and the error-rate guard would pause that batch (it is tested on its own: test_provider_faults.py).
    body = batch_body(items, error_rate_guard=False)
    created = await asyncio.gather(*(http.post("/api/v1/generation/batch", json=body) for _ in range(count)))
    watched: list[tuple[str, list[Viewer]]] = []
    for n, response in enumerate(created):
        assert response.status_code == 201, response.text
        rngs = [random.Random(seed + n * VIEWERS + v) if v < DROPPING_VIEWERS else None for v in range(VIEWERS)]
        watched.append((response.json()["id"], [Viewer(response.json()["id"], rng=rng) for rng in rngs]))
    async with asyncio.timeout(110):
        await asyncio.gather(*(viewer.follow(http) for _, viewers in watched for viewer in viewers))
    return watched


async def test_twenty_batches_five_viewers_each_a_fifth_of_calls_failing_end_consistent_with_no_growth(
    make_settings: SettingsFactory,
    serve: Serve,
    people: dict[str, Person],
    db: Database,
    fake_llm: FakeLLM,
) -> None:
    settings = make_settings(
        provider="openai",
        openai_base_url=fake_llm.base_url,
        openai_timeout_s=1.0,
        max_attempts=MAX_ATTEMPTS,
        batch_concurrency=2,
        max_concurrency=16,
        max_running_batches_per_user=BATCHES,
        max_streams_per_user=BATCHES * VIEWERS + 10,
        heartbeat_s=2.0,
        log_format="json",
    )
    server = serve(settings)
    assert server.process is not None
    # The provider's HTTP pool is a pool like the others: it keeps a connection per concurrent attempt.
    provider_port = httpx.URL(fake_llm.base_url).port
    assert provider_port is not None
    pid, ports = server.process.pid, server_ports(settings) | {provider_port}
    fake_llm.fail_randomly(FAILURE_RATE, FAILURES, seed=SEED)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=BATCHES * VIEWERS)
    timeout = httpx.Timeout(30, read=None)
    faculty = people["faculty"]
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=faculty.headers, limits=limits, timeout=timeout
    ) as http:
        # Warm-up at full concurrency: the connection pools (database, provider) and caches reach their size.
        await _watch_batches(http, BATCHES // 2, 4, seed=SEED - 1000)
        before = await settled(server.base_url)
        pooled_before = pooled_connections(pid, ports)
        calls_before, injected_before = fake_llm.request_count, Counter(fake_llm.injected)
        started = time.monotonic()
        watched = await _watch_batches(http, BATCHES, ITEMS, seed=SEED)
        soaked_s = time.monotonic() - started
        after = await settled(server.base_url)
        pooled_after = pooled_connections(pid, ports)
        await tasks_back_to(server.base_url, before.tasks)
        details = [(await http.get(f"/api/v1/generation/batch/{batch_id}")).json() for batch_id, _ in watched]

    injected = Counter(fake_llm.injected)
    injected.subtract(injected_before)
    calls = fake_llm.request_count - calls_before
    attempts = failed_attempts = completed = failed = drops = 0
    statuses: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for (batch_id, viewers), detail in zip(watched, details, strict=True):
        batch = await assert_consistent(db, batch_id)
        ledger = await assert_attempts_accounted(db, batch_id, max_attempts=MAX_ATTEMPTS)
        log = await event_log(db, batch_id)
        kinds.update(p["errorKind"] for _, name, p in log if name == "item.failed")
        for viewer in viewers:
            assert viewer.unexpected == {}, viewer.statuses
            assert viewer.logged == log, f"a viewer of batch {batch_id} missed or repeated an event"
            drops += viewer.drops
        snapshot = detail["snapshot"]
        assert (snapshot["completedItems"], snapshot["failedItems"], snapshot["pendingItems"]) == (
            batch.completed_items,
            batch.failed_items,
            0,
        )
        assert batch.completed_items + batch.failed_items == ITEMS
        statuses[batch.status] += 1
        attempts += ledger.started
        failed_attempts += ledger.retried + ledger.failed_for_good
        completed, failed = completed + batch.completed_items, failed + batch.failed_items
    # One request per attempt, and every failure the provider served is one failed attempt of its kind in the
    # logs. A loaded machine may let a good answer time out as well, never the other way round.
    assert calls == attempts
    served = Counter({kind: sum(injected[b] for b in behaviours) for kind, behaviours in KINDS.items()})
    assert kinds.keys() <= served.keys(), kinds
    assert {k: kinds[k] for k in served if k != "timeout"} == {k: served[k] for k in served if k != "timeout"}
    assert kinds["timeout"] >= served["timeout"]
    assert sum(kinds.values()) == failed_attempts
    assert 0.1 < failed_attempts / calls < 0.3
    # Nothing grew: every stream and subscription given back, no task, descriptor or memory kept.
    assert (after.streams, after.subscribers) == (0, 0)
    # The pools' connections to PostgreSQL, Redis and the provider are counted apart: they may grow to the
    # load's peak concurrency (on a busy machine, more than the warm-up reached), within the pools' bounds
    # (the provider's: one per attempt in flight), and no further.
    assert after.fds - pooled_after <= before.fds - pooled_before + 2, f"file descriptors: {before} -> {after}"
    pooled_bound = settings.db_pool_size + POOLED_REDIS_BOUND + settings.max_concurrency
    assert pooled_after <= pooled_bound, f"pooled: {pooled_before} -> {pooled_after}"
    assert after.rss_mb - before.rss_mb < RSS_BOUND_MB, f"memory: {before} -> {after}"
    entries = json_log_lines(server)
    assert [e for e in entries if e["level"] in ("error", "critical") or "exception" in e] == []
    print(
        f"\nsoak: {BATCHES} batches x {ITEMS} items, {BATCHES * VIEWERS} viewers ({drops} drops resumed) in "
        f"{soaked_s:.1f}s; {calls} provider calls, {failed_attempts} failed ({_kinds(injected)}; by kind "
        f"{dict(kinds)}); "
        f"{completed} items completed, {failed} failed for good; batches {dict(statuses)}; "
        f"server before: {before}; after: {after}; pooled connections {pooled_before} -> {pooled_after}"
    )


def _kinds(injected: Counter[Any]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(injected.items()) if kind != "ok" and n)
