"""The whole way in, in Chromium, as a faculty member of a school whose identity provider is configured: the
sign-in page offers it, its own form takes the password, and livebatch's pages follow, down to a batch's
live stream; then Sign out ends the session. The provider is django-oauth-toolkit in its own process."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect

from livebatch.db import Database
from tests.conftest import Backend, LiveFactory, SettingsFactory, free_port, seed_courses
from tests.oidc.support import API_AUDIENCE, CLIENT_ID, CLIENT_SECRET, PASSWORDS, IdentityProviderProcess
from tests.web.conftest import WAIT_MS
from tests.web.conftest import axe_source as axe_source  # axe-core, vendored by `make axe`
from tests.web.helpers import accessibility_problems, badge, wait_for_count

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def test_a_faculty_member_signs_in_with_the_provider_watches_a_batch_and_signs_out(
    browser: Browser,
    identity_provider: IdentityProviderProcess,
    make_settings: SettingsFactory,
    live_process: LiveFactory,
    backend: Backend,
    axe_source: str,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = make_settings(
        public_url=base,
        offline_latency_ms=150,
        oidc_issuer=identity_provider.issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        oidc_provider_name="Test University",
        oidc_audience=API_AUDIENCE,
    )
    db = Database(settings.effective_database_url, pool_size=1, max_overflow=1)
    try:
        async with db.session() as session:
            await seed_courses(session)
    finally:
        await db.dispose()
    args = ["serve", "--host", "127.0.0.1", "--port", str(port)] + (["--worker"] if backend.scaled else [])
    live_process(settings, *args, port=port)

    context = await browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        await page.goto(f"{base}/faculty/generate/batches")
        await expect(page).to_have_url(re.compile(r"/signin\?next="))
        assert await accessibility_problems(page, axe_source) == []
        await page.get_by_role("link", name="Sign in with Test University").click()

        # The provider's own page: nothing of livebatch's, another origin.
        await expect(page.get_by_role("heading", name="Test University sign-in")).to_be_visible()
        assert page.url.startswith(identity_provider.base_url)
        await page.get_by_label("Username").fill("ada")
        await page.get_by_label("Password").fill(PASSWORDS["ada"])
        await page.get_by_role("button", name="Sign in").click()

        await expect(page).to_have_url(f"{base}/faculty/generate/batches")
        await expect(page.locator(".who")).to_have_text("Ada Lovelace · ada.idp@uni.example")
        cookie = [c for c in await context.cookies(base) if c["name"] == "livebatch_session"]
        assert cookie and cookie[0]["httpOnly"] and cookie[0]["sameSite"] == "Lax"
        assert await accessibility_problems(page, axe_source) == []  # the top bar with who and Sign out

        await page.get_by_role("navigation", name="Main").get_by_role("link", name="New batch").click()
        await page.get_by_label("Number of items").fill("6")
        await page.get_by_role("button", name="Start batch").click()
        await expect(page).to_have_url(re.compile(r"/faculty/generate/batch/[0-9a-f-]{36}$"))
        await wait_for_count(page, "completed", 6)  # pushed by the stream as the items complete
        await expect(badge(page)).to_have_text("Completed")

        await page.get_by_role("button", name="Sign out").click()
        await expect(page).to_have_url(f"{base}/signin")
        assert [c for c in await context.cookies(base) if c["name"] == "livebatch_session"] == []
        await page.goto(f"{base}/faculty/generate/batches")
        await expect(page).to_have_url(re.compile(r"/signin\?next="))

        # Someone the provider knows but not as faculty (a browser of their own): a page that says why, no session.
        await context.close()
        context = await browser.new_context(viewport={"width": 1100, "height": 900})
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        await page.goto(f"{base}/signin")
        await page.get_by_role("link", name="Sign in with Test University").click()
        await page.get_by_label("Username").fill("sam")
        await page.get_by_label("Password").fill(PASSWORDS["sam"])
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Not available to you")).to_be_visible()
        await expect(page.get_by_role("alert")).to_contain_text("does not give you the faculty role")
        assert [c for c in await context.cookies(base) if c["name"] == "livebatch_session"] == []
        assert await accessibility_problems(page, axe_source) == []
    finally:
        await context.close()
