"""What a faculty member reads on the progress page, in Chromium against a real `livebatch serve`: a hung
server is a lost connection (not "Live" beside a countdown), the figures agree with one another (retrying
items counted, nothing moving while paused, the whole run's rate at the end), failures are found in a long
feed, and a second tab on a finished batch follows a retry started elsewhere, its retried rows kept."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.web.conftest import DESKTOP, Site
from tests.web.helpers import (
    FINISHED,
    OBSERVE_PAGE,
    assert_page_matches_api,
    badge,
    connection,
    paused_batch,
    shown_feed,
    wait_for_count,
    wait_for_rows,
)

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]
Screenshot = Callable[..., Awaitable[Path]]

ETA = '[data-field="eta"]'
NEWEST_ROW_IN_VIEW = """() => {
  const row = document.querySelector("#feed-list > li:last-child").getBoundingClientRect();
  const box = document.querySelector("#feed-scroll").getBoundingClientRect();
  return row.height > 0 && row.top >= box.top - 1 && row.bottom <= box.bottom + 1
    && row.top >= 0 && row.bottom <= window.innerHeight;
}"""


@pytest.mark.parametrize("private_server", [{"heartbeat_s": 1.0}], indirect=True)
async def test_a_hung_server_is_a_lost_connection_whose_countdown_stops_until_it_resumes(
    private_site: Site, screenshot: Screenshot
) -> None:
    """The issue's case: the server frozen (SIGSTOP) kept the page "Live" while the time remaining counted
    down. Two heartbeat intervals of silence (here 1 s each) make it a lost connection: the banner says so,
    the countdown stops, and the page reconnects from its last event id when the server is back."""
    site = private_site
    site.fake.default = "timeout:0.6"  # items slow enough that the batch is still running afterwards
    batch_id, page = await paused_batch(site, 30)
    await site.post(batch_id, "resume")
    await wait_for_count(page, "completed", 3)
    await expect(page.locator(ETA)).to_have_text(re.compile(r"^about "))
    server = site.server.process.process
    assert server is not None

    server.send_signal(signal.SIGSTOP)
    try:
        began = asyncio.get_running_loop().time()
        await expect(connection(page)).to_have_text("Connection lost, reconnecting…", timeout=15_000)
        noticed = asyncio.get_running_loop().time() - began
        await expect(page.locator("main")).to_have_attribute("data-connection", "lost")
        frozen = await page.locator(ETA).text_content()
        await asyncio.sleep(2.5)
        assert await page.locator(ETA).text_content() == frozen, "the countdown stops while the server is away"
        await expect(connection(page)).to_have_text("Connection lost, reconnecting…")
        await screenshot(page, "hung-server")
    finally:
        server.send_signal(signal.SIGCONT)
    assert noticed < 10, f"noticed after {noticed:.1f}s (2 heartbeats of 1 s, checked every second)"

    # Back: live again from the last id (or finished meanwhile), every event once.
    await expect(page.locator("main")).not_to_have_attribute("data-connection", "lost")
    await expect(badge(page)).to_have_text(re.compile(FINISHED), timeout=60_000)
    await assert_page_matches_api(page, site, batch_id)
    assert [index for index, _ in await shown_feed(page)] == list(range(30))


async def test_the_counts_say_how_many_items_are_retrying_and_nothing_moves_while_paused(site: Site) -> None:
    batch_id, page = await paused_batch(site, 12)
    # The first two attempts are rate limited for a minute: their items wait, retrying, and have not failed.
    site.fake.queue("429:60", "429:60")
    await site.post(batch_id, "resume")
    retrying = page.locator('[data-count="retrying"]')
    await expect(retrying).to_have_text("2")
    await expect(page.locator(".count.retrying")).to_be_visible()
    await expect(page.locator('[data-count="failed"]')).to_have_text("0")
    await expect(page.locator("#feed-list > li.retrying .state-text")).to_have_text(["Retrying", "Retrying"])
    assert await page.locator("#feed-list > li.failed").count() == 0
    await wait_for_count(page, "completed", 4)

    await site.post(batch_id, "pause")
    await expect(badge(page)).to_have_text("Paused")
    await page.wait_for_function("() => document.querySelector(\"[data-count='in-progress']\").textContent === '0'")
    # Items in flight finished after the pause: the rate did not climb for them, and time stands still.
    throughput, elapsed = page.locator('[data-field="throughput"]'), page.locator('[data-field="elapsed"]')
    before = (await throughput.text_content(), await elapsed.text_content())
    await asyncio.sleep(2.5)
    assert (await throughput.text_content(), await elapsed.text_content()) == before
    detail = await assert_page_matches_api(page, site, batch_id)
    assert detail["snapshot"]["retryingItems"] == 2 and detail["runningSince"] is None
    assert before[0] == f"{detail['snapshot']['throughputRate']:.1f} items/min"


async def test_a_finished_batch_shows_its_whole_run_rate_and_its_time_without_pauses(site: Site) -> None:
    batch_id, page = await paused_batch(site, 10)
    await site.post(batch_id, "resume")
    await wait_for_count(page, "completed", 3)
    await site.post(batch_id, "pause")
    await expect(badge(page)).to_have_text("Paused")
    await asyncio.sleep(3)  # paused time, which elapsed time does not count
    await site.post(batch_id, "resume")
    await expect(badge(page)).to_have_text("Completed")
    detail = await site.batch(batch_id)
    assert detail["runRate"] > 0 and detail["activeMs"] > 0
    await expect(page.locator('[data-field="throughput"]')).to_have_text(f"{detail['runRate']:.1f} items/min overall")
    seconds = detail["activeMs"] // 1000
    await expect(page.locator('[data-field="elapsed"]')).to_have_text(f"{seconds}s")
    wall = await page.evaluate(
        "([a, b]) => (Date.parse(b) - Date.parse(a)) / 1000", [detail["started_at"], detail["completed_at"]]
    )
    assert wall - detail["activeMs"] / 1000 >= 2.5, "the pause is not in it"


async def test_failures_are_found_by_filter_and_next_failure_and_the_newest_row_stays_in_view(
    site: Site, screenshot: Screenshot
) -> None:
    batch_id = await site.create_batch(60, error_rate_guard=False)  # failures are the point, not a guard's pause
    await site.post(batch_id, "pause")
    site.fake.fail_randomly(0.45, ("duplicate",), seed=20)  # two attempts an item: about a fifth fail for good
    page = await site.page(viewport=DESKTOP)
    await page.goto(f"{site.base_url}/faculty/generate/batch/{batch_id}")
    await expect(badge(page)).to_have_text("Paused")
    await site.post(batch_id, "resume")
    # Following the newest row: it is on the first screen of a 1280x900 window, not below the fold.
    await wait_for_rows(page, 20)
    await page.wait_for_function(NEWEST_ROW_IN_VIEW)
    assert await page.evaluate("window.scrollY") == 0
    await expect(badge(page)).to_have_text(re.compile(FINISHED), timeout=60_000)
    await page.wait_for_function(NEWEST_ROW_IN_VIEW)
    detail = await assert_page_matches_api(page, site, batch_id)
    failed = detail["snapshot"]["failedItems"]
    assert failed >= 3, detail["snapshot"]
    failed_rows = sorted(row["itemIndex"] for row in detail["items"] if row["status"] == "failed")

    # The filter: one attribute on the list, the other rows hidden by CSS.
    visible = "() => [...document.querySelectorAll('#feed-list > li')].filter((li) => li.offsetParent).length"
    await page.get_by_role("button", name="Failed", exact=True).click()
    await expect(page.get_by_role("button", name="Failed", exact=True)).to_have_attribute("aria-pressed", "true")
    await page.wait_for_function(f"() => ({visible})() === {failed}")
    await page.get_by_role("button", name="Running", exact=True).click()
    await expect(page.get_by_text("No item is running.")).to_be_visible()
    await page.get_by_role("button", name="All", exact=True).click()
    await page.wait_for_function(f"() => ({visible})() === 60")

    # Next failure: each failed row in turn, opened, its Details focused; following the newest row stops.
    next_failure = page.get_by_role("button", name="Next failure")
    for index in [*failed_rows[:3], *failed_rows[3:4]]:
        await next_failure.click()
        row = page.locator(f'#feed-list > li[data-index="{index}"]')
        await expect(row.locator("button.expand")).to_be_focused()
        await expect(row.locator(".error-detail")).to_be_visible()
        await expect(row).to_be_in_viewport()
    await expect(page.get_by_role("button", name="Auto-scroll")).to_have_attribute("aria-pressed", "false")
    await screenshot(page, "next-failure", full_page=False)


async def test_a_second_tab_on_a_finished_batch_follows_a_retry_started_elsewhere_and_keeps_the_retried_rows(
    site: Site,
) -> None:
    batch_id, first = await paused_batch(site, 8, error_rate_guard=False)  # it is to fail, not to pause
    site.fake.default = "duplicate"  # every attempt from now on breaks a rule
    await site.post(batch_id, "resume")
    ended = re.compile(r"^(Failed|Completed with errors)$")  # (an item or two may have run before the pause)
    await expect(badge(first)).to_have_text(ended)
    second = await site.page()
    await second.add_init_script(OBSERVE_PAGE)
    await second.goto(f"{site.base_url}/faculty/generate/batch/{batch_id}")
    await expect(badge(second)).to_have_text(ended)
    failed = (await site.batch(batch_id))["snapshot"]["failedItems"]
    assert failed >= 6
    await expect(second.locator("#feed-list > li.failed")).to_have_count(failed)

    # Retried from the first tab; the provider holds its answers, so the batch runs (two at a time) with rows
    # waiting their turn for as long as the test needs.
    site.fake.default = "timeout:60"
    await first.get_by_role("button", name="Retry failed").click()
    await expect(badge(first)).to_have_text("Running")
    # The first tab keeps every row: those not started yet say so, as the server lists them.
    await expect(first.locator("#feed-list > li.queued .state-text").first).to_have_text("Queued for retry")
    await expect(first.locator("#feed-list > li")).to_have_count(8)

    # The second tab was never touched: it reads its finished batch again (every two heartbeats), sees it
    # running, and follows it on a new stream; its rows stay, queued, until they run.
    await expect(badge(second)).to_have_text("Running", timeout=20_000)
    await expect(second.locator("#feed-list > li.queued").first).to_be_visible()
    await expect(connection(second)).to_have_text("Live")
    site.fake.default = "ok"
    site.fake.release()  # the held attempts fail (a second attempt is left) and are tried again, answered now
    await expect(badge(second)).to_have_text("Completed", timeout=60_000)
    await assert_page_matches_api(second, site, batch_id)
    seen = await second.evaluate("window.__seen")
    assert seen["rowsRemoved"] == 0, "no retried row vanished"
