"""Signed in by the HttpOnly cookie (what the browser's EventSource can send): reads work; a request that
changes something must come from this site, or it is refused and changes nothing."""

from __future__ import annotations

import httpx
import pytest

from livebatch.auth import COOKIE
from livebatch.parts import Parts
from tests.api.conftest import BATCH, create
from tests.checks import load_batch
from tests.conftest import Person
from tests.stream.support import assert_error

OWN = "http://testserver"  # the in-process app's origin


@pytest.fixture
def browser(client: httpx.AsyncClient, people: dict[str, Person]) -> httpx.AsyncClient:
    """The same app, signed in by cookie only."""
    client.cookies.set(COOKIE, people["faculty"].token)
    return client


async def test_the_cookie_signs_in_reads(browser: httpx.AsyncClient, people: dict[str, Person]) -> None:
    batch = await create(browser, people["faculty"], 1)
    me = await browser.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["email"] == "ada@uni.example"
    assert (await browser.get(f"{BATCH}/{batch['id']}")).status_code == 200
    assert (await browser.get(f"{BATCH}es")).status_code == 200


CROSS_SITE = {
    "foreign origin": {"Origin": "https://evil.example"},
    "look-alike origin": {"Origin": "http://testserver.evil.example"},
    "null origin": {"Origin": "null"},
    "no origin": {},  # neither Origin nor Sec-Fetch-Site: nothing says it came from here
    "cross-site": {"Sec-Fetch-Site": "cross-site"},
    "same-site": {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain, which SameSite=Lax lets through
}


async def test_a_cross_site_post_with_the_cookie_is_refused_and_changes_nothing(
    browser: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    batch = await create(browser, people["faculty"], 200)
    before = await load_batch(parts.db, batch["id"])
    for case, headers in CROSS_SITE.items():
        for action in ("pause", "cancel"):
            response = await browser.post(f"{BATCH}/{batch['id']}/{action}", headers=headers)
            assert response.status_code == 403, f"{case}: {action}"
            assert_error(response, 403, "FORBIDDEN")
            assert "Cross-site" in response.json()["error"]["message"]
        response = await browser.post(BATCH, json={"courseId": "course-uuid-1"}, headers=headers)
        assert_error(response, 403, "FORBIDDEN")
        response = await browser.put(f"{BATCH}/{batch['id']}/budget", json={"tokens": 1}, headers=headers)
        assert_error(response, 403, "FORBIDDEN")
    after = await load_batch(parts.db, batch["id"])
    assert after.status not in ("paused", "cancelled") and before.status in ("queued", "running")
    assert after.config == before.config, "the budget did not change"
    history = (await browser.get(f"{BATCH}es")).json()["batches"]
    assert [b["id"] for b in history] == [batch["id"]]
    await browser.post(f"{BATCH}/{batch['id']}/cancel", headers={"Origin": OWN})


async def test_a_same_site_post_with_the_cookie_works(browser: httpx.AsyncClient, people: dict[str, Person]) -> None:
    for headers in ({"Origin": OWN}, {"Origin": "http://127.0.0.1:8000"}, {"Sec-Fetch-Site": "same-origin"}):
        batch = await create(browser, people["faculty"], 200)
        response = await browser.post(f"{BATCH}/{batch['id']}/cancel", headers=headers)
        assert response.status_code == 200 and response.json()["status"] == "cancelled", headers


async def test_a_bearer_token_needs_no_origin(client: httpx.AsyncClient, people: dict[str, Person]) -> None:
    """A page on another site cannot attach the header, so a bearer request is never a forged one."""
    batch = await create(client, people["faculty"], 200)
    headers = people["faculty"].headers | {"Origin": "https://tool.example"}
    assert (await client.post(f"{BATCH}/{batch['id']}/cancel", headers=headers)).status_code == 200


async def test_signing_out_clears_the_cookie_and_is_guarded_too(browser: httpx.AsyncClient) -> None:
    assert_error(await browser.post("/auth/logout", headers={"Origin": "https://evil.example"}), 403, "FORBIDDEN")
    response = await browser.post("/auth/logout", headers={"Origin": OWN})
    assert response.status_code == 204
    cleared = response.headers["set-cookie"]
    assert cleared.startswith(f'{COOKIE}="";') and "Max-Age=0" in cleared and "Path=/" in cleared


async def test_the_pages_sign_out_form_ends_the_session_and_goes_to_sign_in(browser: httpx.AsyncClient) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    forged = await browser.post("/auth/logout", headers=form | {"Origin": "https://evil.example"}, content=b"")
    assert_error(forged, 403, "FORBIDDEN")  # another site cannot sign a faculty member out either
    response = await browser.post("/auth/logout", headers=form | {"Origin": OWN}, content=b"")
    assert response.status_code == 303 and response.headers["location"] == "/signin"
    assert response.headers["set-cookie"].startswith(f'{COOKIE}="";') and "Max-Age=0" in response.headers["set-cookie"]
