"""How the progress page loads: the batch asked for once, early; a long feed drawn a slice per frame, newest
rows first, every row in its place."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import expect

from tests.web.conftest import Site
from tests.web.helpers import api_feed, shown_feed, wait_for_rows

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

FIRST_SLICE, FEED_SLICE = 30, 100  # render.js
# The item indexes of the rows each task inserted into the feed, in order.
RECORD_SLICES = """
window.__slices = [];
document.addEventListener("DOMContentLoaded", () => {
  new MutationObserver((mutations) => {
    const added = mutations.flatMap((m) => [...m.addedNodes]).filter((n) => n.nodeName === "LI");
    if (added.length) window.__slices.push(added.map((li) => Number(li.dataset.index)));
  }).observe(document.querySelector("#feed-list"), { childList: true });
});
"""


async def test_a_long_feed_comes_newest_rows_first_a_slice_per_frame(site: Site) -> None:
    count = FIRST_SLICE + FEED_SLICE + 20
    site.fake.default = "ok"  # answers at once: the batch is over in seconds
    batch_id = await site.create_batch(count)
    async with asyncio.timeout(60):
        while (detail := await site.batch(batch_id))["status"] != "completed":
            await asyncio.sleep(0.1)

    page = await site.page()
    await page.add_init_script(RECORD_SLICES)
    await page.goto(f"{site.base_url}/faculty/generate/batch/{batch_id}")
    await wait_for_rows(page, count)

    slices: list[list[int]] = await page.evaluate("window.__slices")
    # The rows come after the cards, in their own frames: the newest FIRST_SLICE, then FEED_SLICE at a time.
    newest, older = count - FIRST_SLICE, count - FIRST_SLICE - FEED_SLICE
    expected = [list(range(newest, count)), list(range(older, newest)), list(range(older))]
    assert [sorted(s) for s in slices] == expected, "newest slice first"
    assert await shown_feed(page) == api_feed(detail), "every row once, in index order, as the API has it"
    # The feed follows the newest row: it shows at the bottom of the feed's box, however tall the rows not
    # drawn yet were guessed to be.
    await page.wait_for_function(NEWEST_ROW_AT_BOTTOM)


NEWEST_ROW_AT_BOTTOM = """() => {
  const box = document.querySelector("#feed-scroll").getBoundingClientRect();
  const row = document.querySelector("#feed-list > li:last-child").getBoundingClientRect();
  return row.height > 0 && row.top >= box.top && Math.abs(row.bottom - box.bottom) <= 2;
}"""


async def test_the_page_asks_for_its_batch_once_before_its_scripts_run(site: Site) -> None:
    batch_id = await site.create_batch(3)
    await site.post(batch_id, "cancel")
    page = await site.page()
    api = f"{site.base_url}/api/v1/generation/batch/{batch_id}"
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if request.url == api else None)
    await page.goto(f"{site.base_url}/faculty/generate/batch/{batch_id}")
    await expect(page.locator('[data-field="status"]')).to_have_text("Cancelled")
    # The preload in the page's head is the request page.js's fetch takes over: one request, not two,
    # sent before page.js had even arrived.
    assert asked == [api]
    asked_at, script_at = await page.evaluate(
        "([api]) => [api, '/static/page.js'].map((end) => performance.getEntriesByType('resource')"
        ".find((r) => r.name.endsWith(end)))"
        ".map((r, i) => (i === 0 ? r.startTime : r.responseEnd))",
        [f"/api/v1/generation/batch/{batch_id}"],
    )
    assert asked_at < script_at
