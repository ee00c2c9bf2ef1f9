"""Model output holding a character that some line readers end a line on (U+2028, U+2029, U+0085 and every
other one `str.splitlines` splits on) must not break the stream: split into several `data:` lines, an event
is no longer the JSON it was, and the page dropped a failure (its row stuck on "Running…" after the end)
while `livebatch watch` crashed. A refusal carrying all of them goes through a real server to Chromium and to
`livebatch watch`; both show the failure and the end."""

from __future__ import annotations

import asyncio
import sys

import pytest
from playwright.async_api import expect

from tests.conftest import settings_env
from tests.web.conftest import Site
from tests.web.helpers import badge, connection

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

# Every character str.splitlines splits on, each between words.
BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
REFUSAL = "I cannot" + "".join(f"{c}word{i}" for i, c in enumerate(BREAKS)) + " end"
WORDS = [f"word{i}" for i in range(len(BREAKS))]


HOLD = "timeout:600"  # the fake holds each answer until `release()` resets it (a retryable failure)
# After the release: the easy item is refused (no retries left) while the medium one takes its time, so the
# failure comes over the stream while the batch runs, before its end makes the page read the batch again.
AFTER_RELEASE = {"easy": f"refusal:{REFUSAL}", "medium": "timeout:8"}


async def test_line_separators_in_model_output_reach_the_page_as_the_failure_they_are(private_site: Site) -> None:
    site = private_site
    site.fake.default = HOLD
    batch_id = await site.create_batch(2, mix=(50, 50, 0))
    page = await site.open_batch(batch_id)
    await expect(connection(page)).to_have_text("Live")
    await expect(page.locator("[data-count='in-progress']")).to_have_text("2")
    site.fake.by_difficulty = dict(AFTER_RELEASE)
    site.fake.release()
    failed = page.locator("#feed-list > li.failed")
    await expect(failed.locator(".error-detail")).to_contain_text("no retries left")
    assert await badge(page).text_content() == "Running", "the failure must arrive while the batch runs"
    await expect(page.locator("[data-count='failed']")).to_have_text("1")
    await failed.get_by_role("button", name="Details").click()
    shown = await failed.locator(".error-detail").text_content() or ""
    assert all(word in shown for word in WORDS) and "I cannot" in shown and "end" in shown, shown
    assert "\u2028word8" in shown and "\u2029word9" in shown and "\x85word7" in shown, repr(shown)
    await expect(badge(page)).to_have_text("Completed with errors", timeout=60_000)
    assert await page.locator("#feed-list > li").count() == 2


async def test_line_separators_in_model_output_do_not_crash_livebatch_watch(private_site: Site) -> None:
    site = private_site
    site.fake.default = HOLD
    batch_id = await site.create_batch(2, mix=(50, 50, 0))
    token = site.people["faculty"].token
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "livebatch",
        "watch",
        batch_id,
        "--url",
        site.base_url,
        "--token",
        token,
        env=settings_env(site.settings) | {"COLUMNS": "400"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(90):
            assert process.stdout is not None
            first = (await process.stdout.readline()).decode()
            assert first.startswith(f"batch {batch_id}:"), first  # it has read the batch: its stream starts there
            site.fake.by_difficulty = dict(AFTER_RELEASE)
            site.fake.release()
            rest, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = first + rest.decode()
    assert process.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "JSONDecodeError" not in output, output[-3000:]
    assert "failed for good" in output and all(word in output for word in WORDS), output[-3000:]
    assert f"batch {batch_id} completed_with_errors: 1 completed, 1 failed of 2" in output, output[-3000:]
