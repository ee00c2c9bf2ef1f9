"""What the model writes reaches the page as text, end to end: a real server whose provider (the fake LLM)
answers with HTML and script in a refusal and in a generated question. Chromium shows the characters on
the progress page (live over the stream, then again after a reload, from the batch API) and on the items
page; no element is made of them and nothing in them runs. (The page's own handling of hostile text from
the API and the stream, faked per route: tests/web/test_progress_states.py.)"""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.fakes.llm_server import ITEM
from tests.scaled.conftest import wait_until
from tests.web.conftest import Site
from tests.web.helpers import paused_batch

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

HOSTILE = '<img src=x onerror="window.__owned = 1"><script>window.__owned = 2</script>'


async def _nothing_ran(page: Page) -> None:
    assert await page.locator("main img, main script").count() == 0, "the model's text became markup"
    assert await page.evaluate("window.__owned") is None, "the model's script ran"


async def test_html_and_script_from_the_model_are_shown_as_text_and_run_nothing(private_site: Site) -> None:
    site = private_site
    site.fake.default = f"refusal:{HOSTILE}"
    site.fake.latency_s = 0.3  # so that the batch is paused before its item has used both attempts
    refused, page = await paused_batch(site, 1)
    await site.post(refused, "resume")  # the item's (last) refusal now arrives over the stream
    message = f"Error: Validation failed: the model refused ({HOSTILE})"
    row = page.locator("#feed-list > li.failed")
    await expect(row.locator(".error-detail")).to_contain_text("no retries left")
    for arrived_by in ("stream", "batch API after a reload"):
        await row.get_by_role("button", name="Details").click()
        await expect(row.locator(".error-detail")).to_contain_text(message)
        await _nothing_ran(page)
        if arrived_by == "stream":
            # Announced as text (the failure, then the batch's end: the live region hears both in turn).
            await expect(page.locator("#announcer")).to_contain_text("Batch failed")
            announced = " ".join(await page.evaluate("window.__seen.announced"))
            assert f"failed (no retries left): Validation failed: the model refused ({HOSTILE})" in announced
            await page.reload()

    site.fake.default, site.fake.latency_s = "ok", 0.0
    # Hostile, yet an item that passes every rule (its explanation names the keyed option).
    explanation = f"Because {HOSTILE}, the right coronary artery."
    site.fake.item = dict(ITEM, stem=f"Which {HOSTILE} is it?", explanation=explanation)
    generated = await site.create_batch(1)

    async def completed() -> bool:
        detail = await site.batch(generated)
        return bool(detail["status"] == "completed")

    await wait_until(completed, timeout=30, what="the batch with a hostile question to complete")
    await page.goto(f"{site.base_url}/faculty/generate/batch/{generated}/items")
    await expect(page.locator(".stem")).to_have_text(f"Which {HOSTILE} is it?")
    await expect(page.locator(".answer")).to_contain_text(explanation)
    await _nothing_ran(page)
