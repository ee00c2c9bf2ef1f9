"""Issue 13 on the progress page, in Chromium against a real server: what a batch used and cost, a batch that
paused itself (its budget spent, or its attempts failing) saying why and how to go on, the ETA as a range,
and a stream that was reset because the log it resumed from was pruned."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from playwright.async_api import Page, Request, expect

from livebatch.batches import retention
from livebatch.clock import utcnow
from livebatch.db import Database
from livebatch.events.bus import LocalBus
from livebatch.uow import Transactions
from tests.web.conftest import ITEM_LATENCY, Site
from tests.web.helpers import Gate, assert_page_matches_api, badge, connection, until, wait_for_count

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]
Screenshot = Callable[[Page, str], Awaitable[Path]]
DOCS = Path(__file__).parents[2] / "docs"
DASH = "\u2013"  # the range's dash, as the page writes it
RANGE = re.compile(rf"^(about \d+({DASH}\d+)? (s|min|h)|about \d+ (s|min){DASH}\d+ (min|h)|under \d+ (s|min|h))$")


async def whole_page(page: Page, screenshot: Screenshot, name: str) -> None:
    """A screenshot with the whole page in view (feed rows out of view are not painted: content-visibility),
    kept as the README's picture of this state when taken on the embedded run."""
    await page.set_viewport_size({"width": 1100, "height": 1500})
    await page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    shot = await screenshot(page, name)
    if shot.name.endswith("-embedded.png"):
        shutil.copyfile(shot, DOCS / f"{name}.png")


async def test_a_spent_budget_pauses_the_batch_says_why_and_a_raised_one_lets_it_finish(
    site: Site, screenshot: Screenshot
) -> None:
    # Each answer of the fake costs 20 tokens, 0.0000075 USD at the shared server's price: about 14 of them.
    batch_id = await site.create_batch(30, budget={"cost": 0.0001})
    page = await site.open_batch(batch_id)
    await expect(badge(page)).to_have_text("Paused")
    notice = page.locator('[data-field="guard"]')
    await expect(notice).to_contain_text("Paused by its budget:")
    await expect(notice).to_contain_text("spent of $0.0001. Raise the budget, then resume; or cancel the batch.")
    await page.wait_for_function("() => document.querySelector(\"[data-count='in-progress']\").textContent === '0'")
    detail = await assert_page_matches_api(page, site, batch_id)
    assert (detail["pauseReason"], detail["guards"]["budgetReached"]) == ("budget_reached", True)
    used = detail["snapshot"]
    tokens = used["promptTokens"] + used["completionTokens"]
    await expect(page.locator('[data-field="tokens"]')).to_have_text(f"{tokens:,} tokens")
    await expect(page.locator('[data-field="cost"]')).to_have_text(re.compile(r"^\$0\.000\d+$"))
    await expect(page.locator('[data-field="eta"]')).to_have_text("Paused")

    form = page.locator('[data-field="budget-form"]')
    cost = form.get_by_label("New cost budget (USD)")
    offered = float(await cost.input_value())  # twice what was spent (a little over the budget), rounded up
    assert 2 * 0.0001 <= offered <= 2 * 0.0001 * 1.5, offered
    await expect(form.get_by_label("New token budget")).to_be_hidden()  # no token cap was set
    await whole_page(page, screenshot, "guardrail-pause")

    # A mistake is said in place; nothing is sent.
    await cost.fill("-1")
    await form.get_by_role("button", name="Raise budget").click()
    await expect(page.locator('[data-field="budget-error"]')).to_have_text("Enter a cost above 0.")
    await cost.fill("1")
    await form.get_by_role("button", name="Raise budget").click()
    await expect(page.locator('[data-field="guard-text"]')).to_have_text(
        "Paused by its budget, since raised to $1.00: resume to go on."
    )
    await expect(form).to_be_hidden()
    assert (await site.batch(batch_id))["config"]["budget"] == {"cost": 1.0, "tokens": None}

    await page.get_by_role("button", name="Resume").click()
    await expect(badge(page)).to_have_text("Completed")
    await expect(notice).to_be_hidden()
    detail = await assert_page_matches_api(page, site, batch_id)
    tokens = detail["snapshot"]["promptTokens"] + detail["snapshot"]["completionTokens"]
    await expect(page.locator('[data-field="tokens"]')).to_have_text(f"{tokens:,} tokens")
    assert tokens == 30 * 20


async def test_attempts_failing_pause_the_batch_and_the_page_says_what_to_do(site: Site) -> None:
    site.fake.default = "429"  # the provider rate-limits everything
    batch_id = await site.create_batch(10)
    page = await site.open_batch(batch_id)
    await expect(badge(page)).to_have_text("Paused")
    notice = page.locator('[data-field="guard"]')
    await expect(notice).to_contain_text("Paused by its error-rate guard: ")
    await expect(notice).to_contain_text(" of the last 20 attempts failed. Open a failed row to see why;")
    await expect(page.locator('[data-field="budget-form"]')).to_be_hidden()
    failed = page.locator("#feed-list > li.failed").first
    await failed.get_by_role("button", name="Details").click()
    await expect(failed.locator(".error-detail")).to_contain_text("Rate limited by the provider (HTTP 429)")
    detail = await site.batch(batch_id)
    assert detail["pauseReason"] == "error_rate" and detail["guards"]["recentFailures"] >= 11
    await expect(notice).to_contain_text(f"{detail['guards']['recentFailures']} of the last 20")

    site.fake.default = ITEM_LATENCY  # the storm passes
    await page.get_by_role("button", name="Resume").click()
    await expect(badge(page)).to_have_text(re.compile("^Completed"))
    await expect(notice).to_be_hidden()
    await assert_page_matches_api(page, site, batch_id)


async def test_the_time_remaining_is_estimating_until_items_complete_then_a_range(
    site: Site, screenshot: Screenshot
) -> None:
    # The first two attempts answer only after 8 s: until then nothing has completed, so nothing is measured.
    site.fake.queue("timeout:8", "timeout:8")
    site.fake.default = "timeout:1.0"  # then an item a second, two at a time: a minute of work left
    batch_id = await site.create_batch(120)
    page = await site.open_batch(batch_id)
    await expect(badge(page)).to_have_text(re.compile("^(Queued|Running)$"))
    eta = page.locator('[data-field="eta"]')
    await expect(eta).to_have_text("Estimating…")
    assert (await site.batch(batch_id))["snapshot"]["estimatedTimeRemainingRangeMs"] is None

    await wait_for_count(page, "completed", 6)
    await expect(eta).to_have_text(RANGE)
    low, high = (await site.batch(batch_id))["snapshot"]["estimatedTimeRemainingRangeMs"]
    assert 0 < low <= high
    await expect(page.locator('[data-field="cost"]')).to_have_text(re.compile(r"^\$0\.000\d+$"))
    await whole_page(page, screenshot, "eta-range")
    await site.post(batch_id, "cancel")


class _Nowhere:
    async def enqueue(self, item_ids: Sequence[UUID]) -> None:
        raise AssertionError("pruning queues no work")


async def test_a_stream_reset_by_a_pruned_log_reloads_the_batch_and_follows_it_on(site: Site) -> None:
    """The page loaded a paused batch and asked for its stream, which was slow to come (held here). Meanwhile the
    batch failed, its log was pruned, and it was retried: the stream answers `batch.reset`, and the page loads
    the batch afresh and follows it from there to its end, showing what the server has."""
    batch_id = await site.create_batch(6)
    await site.post(batch_id, "pause")
    page = await site.page()
    streams: list[str] = []

    def on_request(request: Request) -> None:
        if "/progress" in request.url:
            streams.append(request.url)

    page.on("request", on_request)
    gate = Gate()
    await page.route(re.compile(r"/progress\?"), gate)
    await page.goto(f"{site.base_url}/faculty/generate/batch/{batch_id}")
    await expect(badge(page)).to_have_text("Paused")
    await until(lambda: len(gate.held) == 1)
    cursor = int(re.findall(r"lastEventId=(\d+)", streams[0])[0])

    site.fake.default = "401"  # the key is refused: the batch fails at once
    await site.post(batch_id, "resume")
    async with asyncio.timeout(30):
        while (await site.batch(batch_id))["status"] != "failed":
            await asyncio.sleep(0.05)
    db = Database(site.settings.effective_database_url, pool_size=1, max_overflow=1)
    try:
        async with Transactions(db, LocalBus(), _Nowhere()).begin() as uow:
            pruned = await retention.prune_batch(uow, UUID(batch_id), finished_before=utcnow() + timedelta(days=1))
            await uow.commit()
    finally:
        await db.dispose()
    assert pruned > 0
    site.fake.default = ITEM_LATENCY
    await site.post(batch_id, "retry-failed")
    assert (await site.batch(batch_id))["lastEventId"] > cursor + 1

    gate.open()  # the stream the page asked for at load, from its old id, reaches the server now
    await expect(badge(page)).to_have_text("Completed")
    await expect(connection(page)).to_be_hidden()
    detail = await assert_page_matches_api(page, site, batch_id)
    assert detail["snapshot"]["completedItems"] == 6
    assert len(streams) >= 2, "after the reset the page opened a stream of its own"
    resumed_from = int(re.findall(r"lastEventId=(\d+)", streams[1])[0])
    assert resumed_from > cursor, "from the batch as it was read again, not from the pruned id"
