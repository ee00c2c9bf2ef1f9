"""The live progress page in Chromium against a real `livebatch serve`: a whole batch, a reload in the
middle, a server restart, the first moments of a connection, and the way in by sign-in link."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from livebatch.db import Database
from livebatch.terminal import cli_command
from tests.checks import assert_consistent
from tests.web.conftest import Site, record_metric
from tests.web.helpers import (
    FINISHED,
    Gate,
    assert_page_matches_api,
    badge,
    connection,
    paused_batch,
    shown_counts,
    shown_feed,
    until,
    wait_for_count,
)

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]
Screenshot = Callable[[Page, str], Awaitable[Path]]


async def test_a_batch_runs_to_its_end_while_the_page_follows_it(site: Site, screenshot: Screenshot) -> None:
    batch_id, page = await paused_batch(site, 16)
    record_metric(
        "first_render_ms",
        await page.evaluate("performance.getEntriesByName('batch-rendered')[0].startTime"),
        site.backend,
    )
    before = await shown_counts(page)
    await page.evaluate("window.__seen.percentages = []")
    await site.post(batch_id, "resume")

    await expect(badge(page)).to_have_text("Running")
    await wait_for_count(page, "completed", before["completed"] + 3)
    await expect(page.locator("#feed-list > li.started").first).to_be_visible()
    await screenshot(page, "running")
    await page.evaluate("document.querySelector('#feed-list > li').dataset.firstNode = 'yes'")

    await expect(badge(page)).to_have_text("Completed")
    detail = await assert_page_matches_api(page, site, batch_id)
    assert detail["status"] == "completed" and detail["snapshot"]["completedItems"] == 16
    seen = await page.evaluate("window.__seen")
    percentages = seen["percentages"]
    assert len(percentages) >= 4, f"the bar moved in steps: {percentages}"
    assert percentages == sorted(percentages) and percentages[-1] == 100
    assert seen["rowsAdded"] == 16 and seen["rowsRemoved"] == 0, "each row is inserted once and updated in place"
    assert await page.evaluate("document.querySelector('#feed-list > li').dataset.firstNode") == "yes"
    await expect(page.locator("#feed-list > li.completed a.gen")).to_have_count(16)
    await expect(connection(page)).to_be_hidden()  # the stream was closed after batch.complete

    await page.get_by_role("link", name="View generated items").click()
    await expect(page.locator("li.question")).to_have_count(16)
    await expect(page.locator(".option.correct .key")).to_have_count(16)


async def test_a_reload_shows_the_same_counts_at_once_then_continues_live(site: Site) -> None:
    batch_id, page = await paused_batch(site, 20)
    await site.post(batch_id, "resume")
    await wait_for_count(page, "completed", 4)
    await site.post(batch_id, "pause")
    await expect(badge(page)).to_have_text("Paused")
    await page.wait_for_function("() => document.querySelector(\"[data-count='in-progress']\").textContent === '0'")
    counts, feed = await shown_counts(page), await shown_feed(page)

    # Reload with the stream held back: what shows at once comes from the batch API alone.
    gate = Gate()
    await page.route(re.compile(r"/progress\?"), gate)
    await page.reload()
    await expect(badge(page)).to_have_text("Paused")
    assert await shown_counts(page) == counts
    assert await shown_feed(page) == feed
    await expect(connection(page)).to_have_text("Connecting to live updates…")
    await until(lambda: bool(gate.held))  # the stream is asked for after the first state
    gate.open()
    await expect(connection(page)).to_have_text("Live")

    await site.post(batch_id, "resume")
    await wait_for_count(page, "completed", counts["completed"] + 3)
    await page.reload()  # again, in full flight this time
    await expect(badge(page)).to_have_text("Completed")
    await assert_page_matches_api(page, site, batch_id)
    assert [index for index, _ in await shown_feed(page)] == list(range(20)), "no item missing or doubled"


async def test_a_server_restart_shows_disconnected_then_recovers_on_its_own(
    private_site: Site, screenshot: Screenshot
) -> None:
    site = private_site
    batch_id, page = await paused_batch(site, 24)
    await site.post(batch_id, "resume")
    await wait_for_count(page, "completed", 3)

    await asyncio.to_thread(site.server.process.stop)
    await expect(connection(page)).to_have_text("Connection lost, reconnecting…")
    await expect(page.locator("main")).to_have_attribute("data-connection", "lost")
    await screenshot(page, "disconnected")

    await asyncio.to_thread(site.server.process.start)
    # Back by itself: live again, or (when the restarted server finished the batch meanwhile) done.
    await expect(page.locator("main")).not_to_have_attribute("data-connection", "lost")
    await expect(badge(page)).to_have_text(re.compile(FINISHED))
    detail = await assert_page_matches_api(page, site, batch_id)
    assert detail["status"] in ("completed", "completed_with_errors")
    assert [index for index, _ in await shown_feed(page)] == list(range(24))
    db = Database(site.settings.effective_database_url, pool_size=1, max_overflow=1)
    try:
        await assert_consistent(db, batch_id)
    finally:
        await db.dispose()


async def test_the_page_shows_connecting_until_the_batch_api_answers(site: Site) -> None:
    batch_id = await site.create_batch(3)
    page = await site.page()
    gate = Gate()
    await page.route(re.compile(rf"/api/v1/generation/batch/{batch_id}$"), gate)
    await page.goto(f"{site.base_url}/faculty/generate/batch/{batch_id}")
    await expect(page.get_by_text("Connecting to batch progress…")).to_be_visible()
    await expect(page.locator("main")).to_have_attribute("data-phase", "connecting")
    await expect(page.locator("#summary")).to_be_hidden()
    await until(lambda: bool(gate.held))
    gate.open()
    await expect(page.get_by_text("Connecting to batch progress…")).to_be_hidden()
    await expect(badge(page)).to_have_text(re.compile(r"^(Queued|Running|Completed)$"))
    await expect(badge(page)).to_have_text("Completed")


async def test_the_sign_in_link_from_the_cli_lands_on_the_progress_page(site: Site) -> None:
    batch_id = await site.create_batch(2)
    path = f"/faculty/generate/batch/{batch_id}"
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "livebatch",
        "login-link",
        "--user",
        site.people["faculty"].user.email,
        "--next",
        path,
        env=site.server.process.env,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await cli.communicate()
    link = out.decode().strip().splitlines()[-1]
    assert link.startswith(f"{site.base_url}/auth/login?token=")

    page = await site.page(signed_in=False)
    await page.goto(f"{site.base_url}{path}")
    await expect(page).to_have_url(re.compile(r"/signin\?next="))
    # The command as this installation runs it (`.venv/bin/livebatch` from the project's directory).
    await expect(page.locator("code").first).to_have_text(f"{cli_command()} login-link --next '{path}'")

    await page.goto(link)
    await expect(page).to_have_url(f"{site.base_url}{path}")
    await expect(badge(page)).to_have_text("Completed")
    await page.goto(link)  # a link works once
    await expect(page.get_by_role("heading")).to_have_text("This sign-in link is no longer valid")
