"""The screens around the progress page, in Chromium: the new-batch form with its live check of the
difficulty mix, the history list, the generated items, and their contrast."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from livebatch.courses.service import DEMO_COURSES
from tests.web.conftest import Site
from tests.web.helpers import CONTRAST_PROBLEMS, badge

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def test_the_form_checks_the_mix_live_and_starts_a_batch_shown_in_the_history(site: Site) -> None:
    page = await site.page()
    await page.goto(f"{site.base_url}/faculty/generate/batch/new")
    course = page.get_by_label("Course")
    titles = [t.strip() for t in await course.locator("option").all_text_contents()]
    for _, code, title in DEMO_COURSES:
        assert f"{title} ({code})" in titles
    total = page.locator("#mix-total")
    start = page.get_by_role("button", name="Start batch")
    await expect(total).to_have_text("Total: 100%")
    await expect(start).to_be_enabled()

    await page.get_by_label("Easy").fill("45")
    await expect(total).to_have_text("Total: 115%. The mix must add up to 100%.")
    await expect(total).to_have_attribute("data-valid", "false")
    await expect(start).to_be_disabled()
    await page.get_by_label("Medium").fill("35")
    await expect(total).to_have_text("Total: 100%")
    assert await page.evaluate(CONTRAST_PROBLEMS) == []

    await course.select_option(label="Renal Physiology (RNP-210)")
    await page.get_by_label("Number of items").fill("3")
    await start.click()
    await expect(page).to_have_url(re.compile(r"/faculty/generate/batch/[0-9a-f-]{36}$"))
    batch_id = page.url.rsplit("/", 1)[-1]
    await expect(badge(page)).to_have_text("Completed")
    await expect(page.locator('[data-field="course"]')).to_have_text("Renal Physiology (RNP-210)")
    await expect(page.locator('[data-field="mix"]')).to_have_text("Easy 45% · Medium 35% · Hard 20%")
    detail = await site.batch(batch_id)
    assert detail["config"]["difficultyDistribution"] == {"easy": 45, "medium": 35, "hard": 20}

    await page.get_by_role("link", name="Batches", exact=True).click()
    row = page.locator(f'tr[data-batch-id="{batch_id}"]')
    await expect(row).to_contain_text("Renal Physiology")
    await expect(row.locator(".badge")).to_have_text("Completed")
    await expect(row).to_contain_text("3 / 3 completed")
    assert await page.evaluate(CONTRAST_PROBLEMS) == []
    await row.get_by_role("link", name=re.compile("^Items")).click()
    await expect(page.locator("li.question")).to_have_count(3)
    assert await page.evaluate(CONTRAST_PROBLEMS) == []
    await page.go_back()
    await row.get_by_role("link", name=re.compile("^Progress")).click()
    await expect(page).to_have_url(f"{site.base_url}/faculty/generate/batch/{batch_id}")


async def test_the_form_shows_the_servers_refusal(site: Site) -> None:
    page = await site.page()
    await page.goto(f"{site.base_url}/faculty/generate/batch/new")
    await page.get_by_label("Number of items").fill(str(site.settings.max_target_count + 1))
    await page.get_by_role("button", name="Start batch").click()
    await expect(page.get_by_role("alert")).to_contain_text("Number of items")
    await page.evaluate("document.querySelector('#count').removeAttribute('max')")
    await page.get_by_role("button", name="Start batch").click()
    await expect(page.get_by_role("alert")).to_have_text(
        f"targetCount must be at most {site.settings.max_target_count}, not {site.settings.max_target_count + 1}."
    )
    await expect(page).to_have_url(re.compile(r"/batch/new$"))
