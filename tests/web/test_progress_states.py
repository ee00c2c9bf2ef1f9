"""The progress page's states and controls in Chromium: paused, completed with errors, failed, cancelled,
the four buttons, the expandable error rows, the auto-scroll toggle, and text from the server and the
model shown as text. (Connecting, running, completed and disconnected: test_progress_page.py.)"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, Route, expect

from tests.web.conftest import ITEM_LATENCY, Site
from tests.web.helpers import (
    CONTRAST_PROBLEMS,
    assert_page_matches_api,
    badge,
    paused_batch,
    shown_counts,
    wait_for_count,
    wait_for_rows,
)

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]
Screenshot = Callable[[Page, str], Awaitable[Path]]

AT_BOTTOM = (
    "() => { const s = document.querySelector('#feed-scroll');"
    " return s.scrollHeight - s.scrollTop - s.clientHeight < 4; }"
)
GREEN, BLUE, RED, CREAM, WHITE = (
    "rgb(105, 163, 56)",
    "rgb(26, 95, 200)",
    "rgb(198, 40, 40)",
    "rgb(245, 243, 239)",
    "rgb(255, 255, 255)",
)


async def style(page: Page, selector: str, prop: str) -> str:
    value: str = await page.eval_on_selector(selector, "(el, prop) => getComputedStyle(el)[prop]", prop)
    return value


async def test_pause_and_resume_buttons_stop_and_restart_the_batch(site: Site) -> None:
    batch_id, page = await paused_batch(site, 24)
    await page.get_by_role("button", name="Resume").click()
    await expect(badge(page)).to_have_text("Running")
    await wait_for_count(page, "completed", 2)

    await page.get_by_role("button", name="Pause").click()
    await expect(badge(page)).to_have_text("Paused")
    # The focus stays on the control: Resume took Pause's place, so a second Enter resumes.
    await expect(page.get_by_role("button", name="Resume")).to_be_focused()
    await expect(page.locator("#announcer")).to_have_text(re.compile(r"^Batch paused: \d+ of 24 items generated\.$"))
    await expect(page.locator('[data-field="eta"]')).to_have_text("Paused")
    await expect(page.locator('[data-field="notice"]')).to_contain_text("no new item starts until you resume")
    await expect(page.get_by_role("button", name="Pause")).to_be_hidden()
    await page.wait_for_function("() => document.querySelector(\"[data-count='in-progress']\").textContent === '0'")
    detail = await assert_page_matches_api(page, site, batch_id)
    assert detail["status"] == "paused" and detail["snapshot"]["pendingItems"] > 0

    # From the keyboard this time.
    await page.get_by_role("button", name="Resume").focus()
    await page.keyboard.press("Enter")
    await expect(badge(page)).to_have_text("Completed")
    await assert_page_matches_api(page, site, batch_id)


async def test_completed_with_errors_shows_failed_rows_that_expand(site: Site, screenshot: Screenshot) -> None:
    batch_id, page = await paused_batch(site, 8)
    done_before = (await shown_counts(page))["completed"]
    # The next three attempts succeed; every later one breaks a validation rule, twice per item.
    site.fake.queue(ITEM_LATENCY, ITEM_LATENCY, ITEM_LATENCY)
    site.fake.default = "duplicate"
    await site.post(batch_id, "resume")

    await expect(badge(page)).to_have_text("Completed with errors")
    detail = await assert_page_matches_api(page, site, batch_id)
    failed = 8 - done_before - 3
    assert detail["snapshot"]["failedItems"] == failed >= 3
    await expect(page.locator('[data-field="notice"]')).to_contain_text(f"{failed} failed")
    await expect(page.get_by_role("button", name="Retry failed")).to_be_visible()
    await expect(page.get_by_role("link", name="View generated items")).to_be_visible()
    # The live region (polite) heard each failure for good and the end, and no attempt that was retried.
    assert await page.locator("#announcer").get_attribute("aria-live") == "polite"
    await expect(page.locator("#announcer")).to_have_text(
        f"Batch completed with errors: {8 - failed} of 8 items generated, {failed} failed."
    )
    announced: list[str] = (await page.evaluate("window.__seen"))["announced"]
    said = " ".join(announced)
    failures = re.findall(
        r"Item #\d+ failed \(no retries left\): Validation failed: options B and D are identical", said
    )
    assert len(failures) == said.count("Item #") == failed, announced
    assert "will retry" not in said

    rows = page.locator("#feed-list > li.failed")
    await expect(rows).to_have_count(failed)
    first = rows.nth(0)
    assert await style(page, "#feed-list > li.failed", "borderLeftColor") == RED
    await expect(first.locator(".error-detail")).to_be_hidden()
    await first.get_by_role("button", name="Details").click()
    await expect(first.get_by_role("button", name="Details")).to_have_attribute("aria-expanded", "true")
    await expect(first.locator(".error-detail")).to_be_visible()
    await expect(first.locator(".error-detail")).to_contain_text(
        "Error: Validation failed: options B and D are identical"
    )
    await expect(first.locator(".error-detail")).to_contain_text("Failed after 2 attempts; no retries left.")
    second = rows.nth(1).get_by_role("button", name="Details")
    await second.focus()
    await page.keyboard.press("Enter")
    await expect(second).to_have_attribute("aria-expanded", "true")
    await page.keyboard.press("Space")
    await expect(second).to_have_attribute("aria-expanded", "false")

    # The brief's design tokens: bar segments, alternating rows, white cards on cream.
    assert await style(page, '[data-segment="completed"]', "backgroundColor") == GREEN
    assert await style(page, '[data-segment="failed"]', "backgroundColor") == RED
    assert await style(page, '[data-segment="in-progress"]', "backgroundColor") == BLUE
    assert await style(page, "body", "backgroundColor") == CREAM
    assert await style(page, "#summary", "backgroundColor") == WHITE
    assert await style(page, "#feed-list > li:nth-child(1)", "backgroundColor") == WHITE
    assert await style(page, "#feed-list > li:nth-child(2)", "backgroundColor") == CREAM
    assert float(await page.eval_on_selector('[data-segment="failed"]', "el => el.getBoundingClientRect().width")) > 0
    await screenshot(page, "completed-with-errors")
    assert await page.evaluate(CONTRAST_PROBLEMS) == []


async def test_a_failed_batch_shows_why_and_retry_failed_runs_it_again(site: Site) -> None:
    batch_id, page = await paused_batch(site, 6)
    site.fake.default = "401"  # the provider rejects the key: the batch fails at once
    await page.get_by_role("button", name="Resume").click()

    await expect(badge(page)).to_have_text("Failed")
    notice = page.locator('[data-field="notice"]')
    await expect(notice).to_contain_text("The provider rejected the API key (HTTP 401)")
    await expect(notice).to_contain_text("Fix the cause, then retry the failed items.")
    detail = await assert_page_matches_api(page, site, batch_id)
    assert detail["status"] == "failed"
    await expect(page.get_by_role("button", name="Pause")).to_be_hidden()

    site.fake.default = ITEM_LATENCY  # fixed
    await page.get_by_role("button", name="Retry failed").click()
    await expect(badge(page)).to_have_text("Completed")
    detail = await assert_page_matches_api(page, site, batch_id)
    assert detail["snapshot"]["completedItems"] == 6
    await expect(page.locator("#feed-list > li.completed")).to_have_count(6)


async def test_cancel_asks_first_then_cancels_the_batch(site: Site) -> None:
    batch_id, page = await paused_batch(site, 40)
    await page.get_by_role("button", name="Resume").click()
    await wait_for_count(page, "completed", 2)

    # The page's own dialog, its buttons named for what they do (not the browser's OK and Cancel).
    cancel = page.locator('[data-action="cancel"]')
    await cancel.click()
    dialog = page.get_by_role("dialog", name="Cancel this batch?")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("Items not generated yet will not be")
    keep = dialog.get_by_role("button", name="Keep running")
    await expect(keep).to_be_focused()  # the safe choice is the default
    await keep.click()
    await expect(dialog).to_be_hidden()
    await expect(cancel).to_be_focused()  # back on the control
    await expect(badge(page)).to_have_text("Running")
    await page.keyboard.press("Enter")  # again, from the keyboard; Escape keeps it running too
    await expect(dialog).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(badge(page)).to_have_text("Running")

    await cancel.click()
    await dialog.get_by_role("button", name="Cancel batch").click()
    await expect(badge(page)).to_have_text("Cancelled")
    # No control is left: the focus goes to the notice that says what happened, and so does the live region.
    await expect(page.locator('[data-field="notice"]')).to_be_focused()
    await expect(page.locator("#announcer")).to_have_text(re.compile(r"^Batch cancelled: \d+ of 40 items had been"))
    detail = await assert_page_matches_api(page, site, batch_id)
    assert detail["status"] == "cancelled" and detail["snapshot"]["completedItems"] < 40
    for name in ("Pause", "Resume", "Cancel batch", "Retry failed"):
        await expect(page.get_by_role("button", name=name)).to_be_hidden()
    await expect(page.locator('[data-field="notice"]')).to_contain_text("Cancelled.")


async def test_auto_scroll_follows_the_newest_row_until_scrolled_up_or_pressed(site: Site) -> None:
    batch_id, page = await paused_batch(site, 60)
    feed = page.locator("#feed-scroll")
    toggle = page.get_by_role("button", name="Auto-scroll")
    at_bottom = AT_BOTTOM

    async def run_until_rows(n: int) -> None:
        await site.post(batch_id, "resume")
        await wait_for_rows(page, n)
        await site.post(batch_id, "pause")
        await expect(badge(page)).to_have_text("Paused")

    await run_until_rows(16)
    await expect(toggle).to_have_attribute("aria-pressed", "true")
    await page.wait_for_function(at_bottom)
    assert await feed.evaluate("s => s.scrollHeight > s.clientHeight"), "the feed overflows"

    # The user scrolls up: following stops, and new rows do not pull the view down.
    await feed.hover()
    await page.mouse.wheel(0, -400)
    await expect(toggle).to_have_attribute("aria-pressed", "false")
    top = await feed.evaluate("s => s.scrollTop")
    rows = await page.locator("#feed-list > li").count()
    await run_until_rows(rows + 4)
    assert await feed.evaluate("s => s.scrollTop") == top

    # Pressing the toggle follows the newest row again; pressing it once more stops.
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-pressed", "true")
    await page.wait_for_function(at_bottom)
    await toggle.press("Enter")
    await expect(toggle).to_have_attribute("aria-pressed", "false")
    top = await feed.evaluate("s => s.scrollTop")
    rows = await page.locator("#feed-list > li").count()
    await run_until_rows(rows + 4)
    assert await feed.evaluate("s => s.scrollTop") == top
    assert not await page.evaluate(at_bottom)


HOSTILE = '<img src=x onerror="window.__owned = 1"><script>window.__owned = 2</script>'


async def test_text_from_the_server_and_the_model_is_shown_as_text(site: Site) -> None:
    """A hostile course title and model error, from the batch API and from the stream, appear as
    characters on the page; nothing in them runs or becomes markup."""
    batch_id = await site.create_batch(2)
    real = await site.batch(batch_id)
    detail: dict[str, Any] = {
        **real,
        "status": "running",
        "completed_at": None,
        "course": {"id": "x", "code": None, "title": f"Course {HOSTILE}"},
        "items": [
            {
                "itemId": "i0",
                "itemIndex": 0,
                "status": "failed",
                "errorMessage": f"API said {HOSTILE}",
                "retryCount": 1,
                "willRetry": True,
                "timestamp": "2026-01-01T00:00:00.000Z",
            }
        ],
        "lastEventId": 1,
    }
    failed = {
        "itemId": "i1",
        "itemIndex": 1,
        "errorMessage": f"Stream said {HOSTILE}",
        "retryCount": 2,
        "willRetry": False,
        "errorKind": "validation",
    }
    stream = f"id: 2\nevent: item.failed\ndata: {json.dumps(failed)}\n\n"

    async def fake_api(route: Route) -> None:
        await route.fulfill(status=200, content_type="application/json", body=json.dumps(detail))

    async def fake_stream(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/event-stream", body=stream)

    page = await site.page()
    await page.route(re.compile(rf"/api/v1/generation/batch/{batch_id}$"), fake_api)
    await page.route(re.compile(r"/progress\?"), fake_stream)
    await page.goto(f"{site.base_url}/faculty/generate/batch/{batch_id}")
    await expect(page.locator('[data-field="course"]')).to_have_text(f"Course {HOSTILE}")
    await expect(page.locator('#feed-list > li[data-index="1"] .detail')).to_have_text(f"Stream said {HOSTILE}")
    await expect(page.locator('#feed-list > li[data-index="0"] .detail')).to_have_text(f"API said {HOSTILE}")
    await expect(page.locator("#announcer")).to_contain_text(f"Stream said {HOSTILE}")
    assert await page.locator("main img, main script:not([src])").count() == 0
    assert await page.evaluate("window.__owned") is None
