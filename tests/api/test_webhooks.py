"""The webhook API (`/api/v1/me/webhook`) and the settings page: the caller's own webhook only, its secret shown
once, URLs checked, deliveries listed and sent again; students and strangers get nothing."""

from __future__ import annotations

from uuid import UUID, uuid4

import httpx
import pytest

from livebatch.auth import COOKIE
from livebatch.clock import utcnow
from livebatch.config import Settings
from livebatch.parts import Parts
from livebatch.webhooks import repository, service
from tests.conftest import Person, SettingsFactory
from tests.security.support import row_counts
from tests.stream.support import assert_error

WEBHOOK = "/api/v1/me/webhook"
HOOK = "https://hooks.example.org/livebatch"


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(webhook_poll_s=3600.0)  # nothing is sent: the rows stay as the tests leave them


async def _delivery(parts: Parts, person: Person, status: str = "dead") -> UUID:
    """A delivery of `person`'s, in `status` (as the deliverer would have left it)."""
    async with parts.db.session() as session:
        delivery_id = await service.enqueue(
            session,
            user_id=person.user.id,
            batch_id=uuid4(),
            event="batch.complete",
            event_seq=9,
            data={"status": "completed"},
            now=utcnow(),
        )
        delivery = await repository.get_delivery(session, delivery_id)
        assert delivery is not None
        delivery.status, delivery.attempts, delivery.last_error = status, 10, "The receiver answered HTTP 500"
        await session.commit()
    return delivery_id


async def test_the_secret_is_shown_once_and_a_rotation_shows_a_new_one(
    client: httpx.AsyncClient, people: dict[str, Person]
) -> None:
    faculty = people["faculty"].headers
    assert_error(await client.get(WEBHOOK, headers=faculty), 404, "NOT_FOUND")
    created = await client.put(WEBHOOK, json={"url": HOOK}, headers=faculty)
    assert created.status_code == 200
    body = created.json()
    assert body["url"] == HOOK and body["secret"].startswith("whsec_")
    assert body["signatureHeader"] == "Livebatch-Signature"
    read = (await client.get(WEBHOOK, headers=faculty)).json()
    assert "secret" not in read and read["url"] == HOOK
    moved = (await client.put(WEBHOOK, json={"url": HOOK + "/v2"}, headers=faculty)).json()
    assert "secret" not in moved and moved["url"] == HOOK + "/v2"
    rotated = (await client.put(WEBHOOK, json={"url": HOOK, "rotateSecret": True}, headers=faculty)).json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != body["secret"]
    assert (await client.delete(WEBHOOK, headers=faculty)).status_code == 204
    assert_error(await client.get(WEBHOOK, headers=faculty), 404, "NOT_FOUND")
    assert_error(await client.delete(WEBHOOK, headers=faculty), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://hooks.example.org/x", "http:// or https://"),
        ("http://127.0.0.1:9000/hook", "not a public address"),
        ("http://169.254.169.254/latest", "not a public address"),
        ("http://localhost/hook", "local name"),
        ("https://user:secret@hooks.example.org/", "user name or password"),
        ("not a url", "http:// or https://"),
    ],
)
async def test_a_url_that_is_not_safe_to_post_to_is_a_422_that_says_why(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person], url: str, why: str
) -> None:
    before = await row_counts(parts.db)
    response = await client.put(WEBHOOK, json={"url": url}, headers=people["faculty"].headers)
    assert_error(response, 422, "VALIDATION_ERROR")
    assert why in response.json()["error"]["message"]
    assert await row_counts(parts.db) == before


async def test_bad_bodies_are_422(client: httpx.AsyncClient, people: dict[str, Person]) -> None:
    faculty = people["faculty"].headers
    for body in ({}, {"url": ""}, {"url": 7}, {"url": HOOK, "secret": "mine"}, {"url": HOOK, "rotateSecret": "yes"}):
        assert_error(await client.put(WEBHOOK, json=body, headers=faculty), 422, "VALIDATION_ERROR")


async def test_an_operator_may_allow_private_addresses(
    make_settings: SettingsFactory, people: dict[str, Person]
) -> None:
    from livebatch.app import create_app

    rt = Parts(make_settings(webhook_allow_private=True), worker=False)
    await rt.start()
    try:
        app = create_app(parts=rt)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
            local = "http://127.0.0.1:9000/hook"
            response = await http.put(WEBHOOK, json={"url": local}, headers=people["faculty"].headers)
            assert response.status_code == 200 and response.json()["url"] == local
    finally:
        await rt.aclose()


async def test_deliveries_are_listed_newest_first_and_a_dead_one_can_be_sent_again(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    faculty = people["faculty"]
    await client.put(WEBHOOK, json={"url": HOOK}, headers=faculty.headers)
    dead = await _delivery(parts, faculty, "dead")
    pending = await _delivery(parts, faculty, "pending")
    listed = (await client.get(f"{WEBHOOK}/deliveries", headers=faculty.headers)).json()["deliveries"]
    assert [d["id"] for d in listed] == [str(pending), str(dead)]
    assert listed[1]["status"] == "dead" and listed[1]["nextAttemptAt"] is None
    assert listed[0]["nextAttemptAt"] is not None
    assert (await client.get(f"{WEBHOOK}/deliveries", params={"limit": 1}, headers=faculty.headers)).json()[
        "deliveries"
    ][0]["id"] == str(pending)

    again = await client.post(f"{WEBHOOK}/deliveries/{dead}/redeliver", headers=faculty.headers)
    assert again.status_code == 200
    assert (again.json()["status"], again.json()["attempts"]) == ("pending", 0)
    refused = await client.post(f"{WEBHOOK}/deliveries/{pending}/redeliver", headers=faculty.headers)
    assert_error(refused, 409, "INVALID_STATE")
    for bad in (str(uuid4()), "not-a-uuid"):
        assert_error(
            await client.post(f"{WEBHOOK}/deliveries/{bad}/redeliver", headers=faculty.headers), 404, "NOT_FOUND"
        )
    for params in ({"limit": 0}, {"limit": 201}):
        assert_error(
            await client.get(f"{WEBHOOK}/deliveries", params=params, headers=faculty.headers), 422, "VALIDATION_ERROR"
        )


async def test_everything_is_the_callers_own(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    faculty, other = people["faculty"], people["other"]
    await client.put(WEBHOOK, json={"url": HOOK}, headers=faculty.headers)
    mine = await _delivery(parts, faculty)
    before = await row_counts(parts.db)
    # Another faculty member sees no webhook and no delivery of mine, and cannot send mine again.
    assert_error(await client.get(WEBHOOK, headers=other.headers), 404, "NOT_FOUND")
    assert (await client.get(f"{WEBHOOK}/deliveries", headers=other.headers)).json() == {"deliveries": []}
    stolen = await client.post(f"{WEBHOOK}/deliveries/{mine}/redeliver", headers=other.headers)
    assert_error(stolen, 403, "FORBIDDEN")
    assert HOOK not in stolen.text
    assert_error(await client.delete(WEBHOOK, headers=other.headers), 404, "NOT_FOUND")
    assert await row_counts(parts.db) == before
    # Their own PUT makes their own webhook, and leaves mine as it was.
    await client.put(WEBHOOK, json={"url": HOOK + "/grace"}, headers=other.headers)
    assert (await client.get(WEBHOOK, headers=faculty.headers)).json()["url"] == HOOK
    # A student has no webhook to set; without a token, nobody has.
    student = people["student"].headers
    for method, path in (
        ("GET", WEBHOOK),
        ("PUT", WEBHOOK),
        ("DELETE", WEBHOOK),
        ("GET", f"{WEBHOOK}/deliveries"),
        ("POST", f"{WEBHOOK}/deliveries/{mine}/redeliver"),
    ):
        body = {"url": HOOK} if method == "PUT" else None
        assert_error(await client.request(method, path, json=body, headers=student), 403, "FORBIDDEN")
        assert_error(await client.request(method, path, json=body), 401, "UNAUTHORIZED")


async def test_the_settings_page_shows_the_webhook_and_its_dead_deliveries_and_never_the_secret(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    faculty, other = people["faculty"], people["other"]
    hostile = HOOK + '?x="><script>alert(1)</script>'
    secret = (await client.put(WEBHOOK, json={"url": hostile}, headers=faculty.headers)).json()["secret"]
    dead = await _delivery(parts, faculty, "dead")
    page = await client.get("/faculty/settings", headers={"Cookie": f"{COOKIE}={faculty.token}"})
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert secret not in page.text
    assert f'data-delivery-id="{dead}" data-status="dead"' in page.text
    assert "1 dead" in page.text and "The receiver answered HTTP 500" in page.text and "Deliver again" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    theirs = await client.get("/faculty/settings", headers={"Cookie": f"{COOKIE}={other.token}"})
    assert str(dead) not in theirs.text and "hooks.example.org" not in theirs.text
    assert "No delivery yet" in theirs.text
    student = await client.get("/faculty/settings", headers={"Cookie": f"{COOKIE}={people['student'].token}"})
    assert student.status_code == 403 and "Only faculty members" in student.text
    signed_out = await client.get("/faculty/settings")
    assert signed_out.status_code == 303 and signed_out.headers["location"].startswith("/signin")
