"""The deliverer against a real HTTP receiver on loopback: retries with backoff, signatures, dead deliveries,
two deliverers at once, a deliverer that dies mid-POST, and a receiver that cannot slow a batch down."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx

from livebatch.app import create_app
from livebatch.clock import utcnow
from livebatch.config import Settings
from livebatch.db import Database
from livebatch.webhooks import service as webhooks
from livebatch.webhooks.deliverer import Deliverer
from livebatch.webhooks.signature import verify
from tests.batches.conftest import PartsFactory, ProbeProvider, start_batch
from tests.checks import event_log, load_batch, wait_for_status, wait_until
from tests.conftest import Person, SettingsFactory, batch_body
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.webhooks.conftest import FAST, deliveries, set_webhook

BATCH = "/api/v1/generation/batch"


async def _delivered(db: Database, count: int = 1) -> bool:
    rows = await deliveries(db)
    return len(rows) == count and all(d.status == "delivered" for d in rows)


async def test_a_delivery_that_fails_twice_arrives_signed_once_more_with_retries_spaced_by_the_backoff(
    open_parts: PartsFactory, people: dict[str, Person], receiver: WebhookReceiver
) -> None:
    rt = await open_parts(**FAST)
    owner = people["faculty"]
    secret = await set_webhook(rt.db, owner.user.id, receiver.url)
    receiver.queue("500", "reset")  # the first try gets a 500, the second a connection torn down
    batch_id = await start_batch(rt, owner, 2)
    await wait_for_status(rt, batch_id)

    async def arrived() -> bool:
        return await _delivered(rt.db)

    await wait_until(arrived)
    sent = receiver.requests()
    assert [r.behaviour for r in sent] == ["500", "reset", "200"]
    # One delivery, the same id and the same bytes every time, each attempt signed afresh and numbered.
    assert {r.headers["livebatch-delivery"] for r in sent} == {sent[0].json["id"]}
    assert {r.body for r in sent} == {sent[0].body}
    assert [r.headers["livebatch-attempt"] for r in sent] == ["1", "2", "3"]
    for r in sent:
        timestamp = int(r.headers["livebatch-signature"].split(",")[0].removeprefix("t="))
        assert verify(secret, r.headers["livebatch-signature"], r.body, now=timestamp) == timestamp
        assert r.headers["content-type"] == "application/json" and r.path == "/hooks/livebatch"
    body = sent[0].json
    complete = (await event_log(rt.db, batch_id))[-1][2]
    assert (body["type"], body["data"]["batchId"], body["data"]["status"]) == (
        "batch.complete",
        str(batch_id),
        "completed",
    )
    assert body["data"]["completedItems"] == complete["completedItems"] == 2
    assert body["data"]["course"]["title"] == "Cardiovascular Pathology"
    # The waits: at least half of 0.2 s after the first failure, half of 0.4 s after the second.
    assert sent[1].at - sent[0].at >= 0.1
    assert sent[2].at - sent[1].at >= 0.2
    [row] = await deliveries(rt.db)
    assert (row.attempts, row.last_status_code, row.last_error) == (3, 200, None)
    # Exactly these deliveries: a further pass finds nothing due, and nothing more arrives.
    assert rt.deliverer is not None and await rt.deliverer.deliver_due() == 0
    assert receiver.count() == 3


async def test_a_receiver_that_fails_every_time_ends_dead_and_the_batch_never_waited_for_it(
    open_parts: PartsFactory, people: dict[str, Person], receiver: WebhookReceiver
) -> None:
    receiver.default = "hang:30"  # never answers in time
    # Items held at the gate: the batch is still running when it is paused and cancelled (never released).
    rt = await open_parts(ProbeProvider(held=True), **FAST | {"webhook_max_attempts": 3, "webhook_timeout_s": 3.0})
    owner = people["faculty"]
    await set_webhook(rt.db, owner.user.id, receiver.url)
    app = create_app(parts=rt)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        created = await client.post(f"{BATCH}", json=batch_body(30), headers=owner.headers)
        batch_id = created.json()["id"]
        await client.post(f"{BATCH}/{batch_id}/pause", headers=owner.headers)
        started = time.monotonic()
        cancelled = await client.post(f"{BATCH}/{batch_id}/cancel", headers=owner.headers)
        took = time.monotonic() - started
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        # The webhook is not on the request's path: the answer did not wait for a receiver that never answers.
        assert took < 3.0

        async def posted() -> bool:
            return receiver.count() >= 1

        await wait_until(posted)
        [row] = await deliveries(rt.db)
        assert row.status == "pending"  # the batch is over; its notification is still on its way

        async def dead() -> bool:
            return (await deliveries(rt.db))[0].status == "dead"

        await wait_until(dead, timeout=60)
        [row] = await deliveries(rt.db)
        assert (row.attempts, row.last_error) == (3, "No answer within 3s")
        assert receiver.count() == 3
        listed = (await client.get("/api/v1/me/webhook/deliveries", headers=owner.headers)).json()["deliveries"]
        assert [(d["status"], d["attempts"], d["lastError"]) for d in listed] == [("dead", 3, "No answer within 3s")]
    assert (await load_batch(rt.db, UUID(batch_id))).status == "cancelled"


async def test_two_deliverers_at_once_send_each_delivery_once(
    settings: Settings, people: dict[str, Person], receiver: WebhookReceiver, make_settings: SettingsFactory
) -> None:
    fast = make_settings(**FAST)
    first, second = Database(settings.effective_database_url), Database(settings.effective_database_url)
    owner = people["faculty"]
    await set_webhook(first, owner.user.id, receiver.url)
    ids = await _queue(first, owner, 40)
    a, b = Deliverer(first, fast, clock=utcnow), Deliverer(second, fast, clock=utcnow)
    try:

        async def drain(deliverer: Deliverer) -> None:
            while not await _delivered(first, len(ids)):
                if not await deliverer.deliver_due():
                    await asyncio.sleep(0.01)

        await asyncio.wait_for(asyncio.gather(drain(a), drain(b)), 60)
    finally:
        await a.aclose()
        await b.aclose()
        await second.dispose()
        await first.dispose()
    received = Counter(r.headers["livebatch-delivery"] for r in receiver.requests())
    assert received == Counter({str(i): 1 for i in ids})


async def test_a_deliverer_that_dies_mid_post_leaves_the_delivery_to_another_once_its_lease_expires(
    settings: Settings, people: dict[str, Person], receiver: WebhookReceiver, make_settings: SettingsFactory
) -> None:
    slow = make_settings(**FAST | {"webhook_timeout_s": 60.0})
    db = Database(settings.effective_database_url)
    owner = people["faculty"]
    await set_webhook(db, owner.user.id, receiver.url)
    [delivery_id] = await _queue(db, owner, 1)
    receiver.queue("hang:60")
    lease = timedelta(seconds=1)
    dying, other = Deliverer(db, slow, clock=utcnow, lease=lease), Deliverer(db, slow, clock=utcnow, lease=lease)
    try:
        attempt = asyncio.create_task(dying.deliver_due())

        async def posted() -> bool:
            return receiver.count() == 1

        await wait_until(posted)
        attempt.cancel()  # the process dies with its POST in flight: nothing is recorded
        await asyncio.gather(attempt, return_exceptions=True)
        assert await other.deliver_due() == 0  # still leased

        async def taken_over() -> bool:
            return await other.deliver_due() == 1

        await wait_until(taken_over, timeout=30)
        [row] = await deliveries(db)
        assert (row.status, row.attempts) == ("delivered", 2)
        assert [r.headers["livebatch-delivery"] for r in receiver.requests()] == [str(delivery_id)] * 2
    finally:
        await dying.aclose()
        await other.aclose()
        await db.dispose()


async def test_a_removed_webhook_or_a_refused_address_makes_the_delivery_dead_at_once(
    settings: Settings, people: dict[str, Person], receiver: WebhookReceiver, make_settings: SettingsFactory
) -> None:
    db = Database(settings.effective_database_url)
    owner, other = people["faculty"], people["other"]
    strict = make_settings(**FAST | {"webhook_allow_private": False})
    deliverer = Deliverer(db, strict, clock=utcnow)
    try:
        await set_webhook(db, owner.user.id, receiver.url)  # set while loopback was allowed
        await set_webhook(db, other.user.id, receiver.url)
        await _queue(db, owner, 1)
        await _queue(db, other, 1)
        async with db.session() as session:
            await webhooks.remove_webhook(session, other.user.id)
            await session.commit()
        assert await deliverer.deliver_due() == 2
        rows = {d.user_id: d for d in await deliveries(db)}
        assert (rows[owner.user.id].status, rows[owner.user.id].attempts) == ("dead", 1)
        assert "Refused: 127.0.0.1 is not a public address" in (rows[owner.user.id].last_error or "")
        assert (rows[other.user.id].status, rows[other.user.id].last_error) == ("dead", "The webhook was removed.")
        assert receiver.count() == 0
    finally:
        await deliverer.aclose()
        await db.dispose()


async def _queue(db: Database, owner: Person, count: int) -> list[UUID]:
    ids = []
    async with db.session() as session:
        for n in range(count):
            data: dict[str, Any] = {"batchId": str(n), "status": "completed"}
            ids.append(
                await webhooks.enqueue(
                    session,
                    user_id=owner.user.id,
                    batch_id=UUID(int=n),
                    event="batch.complete",
                    event_seq=n + 1,
                    data=data,
                    now=utcnow(),
                )
            )
        await session.commit()
    return ids
