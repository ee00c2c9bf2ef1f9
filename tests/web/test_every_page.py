"""Every page, in Chromium, at a desktop window (1280x900) and a phone's (390x844): no serious or critical
accessibility violation (axe-core), nothing wider than the phone, and the small things that must look the
same everywhere (one time format) or must not look alike (the Paused and "Completed with errors" badges)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.web.conftest import DESKTOP, PHONE, Site
from tests.web.helpers import accessibility_problems, badge, paused_batch

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]
Screenshot = Callable[..., Awaitable[Path]]

# What sticks out to the right of the window (or of the box that scrolls it), by selector; none may.
OVERFLOWING = """() => {
  const width = document.documentElement.clientWidth;
  const out = [];
  const wide = document.documentElement.scrollWidth;
  if (wide > width) out.push(`the page is ${wide}px wide`);
  for (const el of document.querySelectorAll("body *")) {
    if (!el.getClientRects().length || el.closest(".sr-only, [hidden], dialog:not([open])")) continue;
    const box = el.getBoundingClientRect();
    const scroller = el.parentElement && el.parentElement.closest("#feed-scroll");
    const right = scroller ? scroller.getBoundingClientRect().right : width;
    if (box.width > 0 && box.right > right + 0.5) {
      out.push(`${el.tagName.toLowerCase()}.${el.className}: right ${Math.round(box.right)} > ${Math.round(right)}`);
    }
  }
  return out.slice(0, 10);
}"""


async def _pages(site: Site) -> dict[str, str]:
    """A path for each page, with a batch in each state the pages show: running with failures and retries,
    completed with errors, and another faculty member's (a 403)."""
    site.fake.fail_randomly(0.5, ("duplicate",), seed=7)
    ended = await _ended(site, 6)
    site.fake.fail_randomly(0.5, ("duplicate", "429:60"), seed=7)  # some items then wait a minute, retrying
    running = await site.create_batch(30)
    theirs = await site.http.post(
        "/api/v1/generation/batch",
        json={
            "courseId": "course-uuid-1",
            "targetCount": 1,
            "questionType": "single-best-answer",
            "difficultyDistribution": {"easy": 100, "medium": 0, "hard": 0},
        },
        headers=site.people["other"].headers,
    )
    return {
        "batches": "/faculty/generate/batches",
        "new": "/faculty/generate/batch/new",
        "progress-running": f"/faculty/generate/batch/{running}",
        "progress-ended": f"/faculty/generate/batch/{ended}",
        "items": f"/faculty/generate/batch/{ended}/items",
        "not-found": "/faculty/generate/batch/7d2c5a0e-3b7e-4a53-9d6c-0d1b7c4f2e11",
        "forbidden": f"/faculty/generate/batch/{theirs.json()['id']}",
        "signin": "/signin?next=/faculty/generate/batches",
        "link-expired": "/auth/login?token=not-a-link",
    }


async def _ended(site: Site, count: int) -> str:
    """A batch run to its end."""
    batch_id = await site.create_batch(count)
    for _ in range(600):
        if (await site.batch(batch_id))["finished"]:
            return batch_id
        await asyncio.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not end")


async def _settle(page: Page) -> None:
    """Until the progress page shows its batch (the other pages are whole on load)."""
    if await page.locator(".progress-page").count():
        await expect(page.locator("#summary")).to_be_visible()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
async def test_no_page_has_a_serious_or_critical_accessibility_violation(
    site: Site, axe_source: str, viewport: tuple[int, int]
) -> None:
    paths = await _pages(site)
    page = await site.page(viewport=viewport)
    problems: dict[str, list[str]] = {}
    for name, path in paths.items():
        await page.goto(f"{site.base_url}{path}")
        await _settle(page)
        problems[name] = await accessibility_problems(page, axe_source)
    # The progress page in its other states: an error row open, a filter on, the cancel question asked.
    await page.goto(f"{site.base_url}{paths['progress-ended']}")
    await expect(badge(page)).to_have_text(re.compile("^Completed"))
    failed = page.locator("#feed-list > li.failed button.expand")
    if await failed.count():
        await failed.first.click()
    await page.get_by_role("button", name="Failed", exact=True).click()
    problems["progress-details"] = await accessibility_problems(page, axe_source)
    await page.goto(f"{site.base_url}{paths['progress-running']}")
    await page.locator('[data-action="cancel"]').click()
    await expect(page.get_by_role("dialog")).to_be_visible()
    problems["progress-cancel-dialog"] = await accessibility_problems(page, axe_source)
    assert {name: found for name, found in problems.items() if found} == {}


async def test_every_page_fits_a_phone(site: Site, screenshot: Screenshot) -> None:
    """390x844: the batches table was 617 px wide, feed rows wrapped badly, course codes broke at the hyphen."""
    paths = await _pages(site)
    page = await site.page(viewport=PHONE)
    overflowing: dict[str, list[str]] = {}
    for name, path in paths.items():
        await page.goto(f"{site.base_url}{path}")
        await _settle(page)
        overflowing[name] = await page.evaluate(OVERFLOWING)
    assert {name: found for name, found in overflowing.items() if found} == {}

    await page.goto(f"{site.base_url}{paths['progress-ended']}")
    await expect(badge(page)).to_have_text(re.compile("^Completed"))
    course = page.locator('[data-field="course"]')
    await expect(course).to_have_text("Cardiovascular Pathology (CVP-301)")
    assert await course.locator(".code").evaluate("el => el.getClientRects().length") == 1, "CVP-301 on one line"
    # A feed row: index, state and its link or Details on the first line, never more than two lines.
    rows = await page.evaluate(
        "() => [...document.querySelectorAll('#feed-list > li')].map((li) => {"
        "  const state = li.querySelector('.state').getBoundingClientRect();"
        "  const middles = ['.index', '.state', '.end'].map((s) => li.querySelector(s).getBoundingClientRect())"
        "    .filter((r) => r.height > 0).map((r) => (r.top + r.bottom) / 2);"
        "  const line = parseFloat(getComputedStyle(li.querySelector('.state')).lineHeight) || 20;"
        "  return [Math.max(...middles) - Math.min(...middles), state.height / line]; })"
    )
    assert rows and all(spread < 6 and lines < 1.5 for spread, lines in rows), rows
    await screenshot(page, "progress-phone", full_page=False)
    await page.locator("#feed").scroll_into_view_if_needed()
    await screenshot(page, "progress-phone-feed", full_page=False)
    await page.goto(f"{site.base_url}{paths['batches']}")
    await screenshot(page, "batches-phone", full_page=False)


async def test_paused_and_completed_with_errors_do_not_look_alike_and_times_read_the_same(site: Site) -> None:
    paused, page = await paused_batch(site, 4)
    site.fake.default = "duplicate"
    ended = await _ended(site, 3)
    await page.goto(f"{site.base_url}/faculty/generate/batches")
    looks = {}
    for batch_id in (paused, ended):
        row_badge = page.locator(f'tr[data-batch-id="{batch_id}"] .badge')
        looks[batch_id] = await row_badge.evaluate(
            "el => { const s = getComputedStyle(el); const mark = getComputedStyle(el, '::before').content;"
            " return [s.backgroundColor, s.color, s.boxShadow, mark]; }"
        )
    (paused_bg, paused_fg, paused_ring, paused_mark), (ended_bg, ended_fg, _, ended_mark) = looks.values()
    assert paused_bg != ended_bg and paused_fg != ended_fg, looks
    assert paused_bg == "rgb(255, 255, 255)" and "inset" in paused_ring, "Paused is the outlined badge"
    assert paused_mark != ended_mark, looks

    # One format for a moment: the history's "created" and the progress page's "started" read alike.
    created = await page.locator(f'tr[data-batch-id="{ended}"] time').text_content()
    await page.goto(f"{site.base_url}/faculty/generate/batch/{ended}")
    pattern = r"^[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d{2}\s[AP]M$"
    assert re.match(pattern, created or ""), created
    await expect(page.locator('[data-field="started"]')).to_have_text(re.compile(pattern))
