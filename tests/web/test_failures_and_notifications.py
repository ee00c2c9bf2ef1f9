"""Issue 13 on the pages, in Chromium against a real `livebatch serve`: failed items grouped by cause with
"Retry these", opt-in browser notifications when the watched batch ends, and the settings page's webhook."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from playwright.async_api import Dialog, Page, expect

from livebatch.clock import utcnow
from livebatch.db import Database
from livebatch.webhooks import repository, service
from tests.web.conftest import SCREENSHOTS, Site
from tests.web.helpers import CONTRAST_PROBLEMS, assert_page_matches_api, badge, paused_batch, wait_for_count

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]
Screenshot = Callable[[Page, str], Awaitable[Path]]
SECRET = re.compile(r"^whsec_[A-Za-z0-9_-]{40,}$")

# Records, from the first script on, every notification the page makes and every permission it asks for.
RECORD_NOTIFICATIONS = """
window.__notifications = [];
window.__permissionRequests = 0;
const Real = window.Notification;
if (Real) {
  const Recorder = function (title, options) {
    window.__notifications.push({ title, body: options && options.body, tag: options && options.tag });
  };
  Object.defineProperty(Recorder, "permission", { get: () => Real.permission });
  Recorder.requestPermission = (...args) => {
    window.__permissionRequests += 1;
    return Real.requestPermission(...args);
  };
  window.Notification = Recorder;
}
"""


def groups(page: Page) -> Any:
    return page.locator("#failures .failure-group")


async def test_failures_are_grouped_by_cause_and_retry_these_retries_that_group_alone(
    site: Site, screenshot: Screenshot
) -> None:
    # Six items, two of each difficulty: the easy ones meet a provider error, the hard ones repeat an option
    # (from their first attempt on, also one that starts before the pause).
    site.fake.by_difficulty.update({"easy": "500", "hard": "duplicate"})
    batch_id, page = await paused_batch(site, 6, mix=(34, 33, 33))
    await expect(page.locator("#failures")).to_be_hidden()  # failed attempts with a retry to come are no group
    await site.post(batch_id, "resume")

    await expect(badge(page)).to_have_text("Completed with errors")
    await expect(page.locator("#failures")).to_be_visible()
    await expect(page.locator('[data-field="failures-total"]')).to_have_text("4 failed items in 2 groups")
    await expect(groups(page)).to_have_count(2)
    shown = await groups(page).evaluate_all(
        "(rows) => rows.map((r) => [...r.querySelectorAll('.kind, .count, .message, .example, button')]"
        ".map((e) => e.textContent))"
    )
    assert sorted(shown) == [
        [
            "Provider error",
            "2 items",
            "Provider error: HTTP …: fake …",
            "e.g. Provider error: HTTP 500: fake 500",
            "Retry these 2",
        ],
        [
            "Validation",
            "2 items",
            "Validation failed: options … are identical",
            "e.g. Validation failed: options B and D are identical",
            "Retry these 2",
        ],
    ]
    detail = await assert_page_matches_api(page, site, batch_id)
    api_groups = {g["errorKind"]: g for g in detail["failureGroups"]}
    assert {k: g["count"] for k, g in api_groups.items()} == {"provider_error": 2, "validation": 2}
    assert await page.evaluate(CONTRAST_PROBLEMS) == []
    await screenshot(page, "failure-groups")
    # What docs/failure-groups.png shows: the bar, the groups and the feed in one view (rows far out of view
    # are not painted, by design, so a full-page picture would show the feed empty).
    await page.evaluate("document.querySelector('#progress').scrollIntoView()")
    await page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    await page.screenshot(path=str(SCREENSHOTS / f"failure-groups-view-{site.backend.kind}.png"))

    # The provider is fixed; the items that broke a rule would only break it again: retry the provider errors.
    site.fake.by_difficulty.pop("easy")
    hard_requests = sum(1 for r in site.fake.requests if "Difficulty: hard" in str(r["body"]))
    provider = page.locator(f'#failures [data-key="{api_groups["provider_error"]["key"]}"]')
    await provider.get_by_role(
        "button", name="Retry these 2: the 2 items that failed with: Provider error: HTTP …: fake …"
    ).click()

    await expect(page.locator('[data-field="failures-total"]')).to_have_text("2 failed items in 1 group")
    # The badge says "Completed with errors" before the retry too: wait for the two retried items to be done.
    await wait_for_count(page, "completed", 4)
    await expect(badge(page)).to_have_text("Completed with errors")
    await expect(groups(page)).to_have_count(1)
    await expect(groups(page).first).to_contain_text("Validation failed: options … are identical")
    detail = await assert_page_matches_api(page, site, batch_id)
    assert (detail["snapshot"]["completedItems"], detail["snapshot"]["failedItems"]) == (4, 2)
    assert sum(1 for r in site.fake.requests if "Difficulty: hard" in str(r["body"])) == hard_requests
    # The batch is over again, so the group left may be retried in its turn.
    retry = groups(page).first.get_by_role(
        "button", name="Retry these 2: the 2 items that failed with: Validation failed"
    )
    await expect(retry).to_have_text("Retry these 2")


async def test_notifications_are_asked_for_by_a_button_and_tell_when_the_batch_ends(site: Site) -> None:
    opted_in = await site.page()
    await opted_in.context.grant_permissions(["notifications"], origin=site.base_url)
    await opted_in.add_init_script(RECORD_NOTIFICATIONS)
    batch_id, opted_in = await paused_batch(site, 5, page=opted_in)
    bystander = await site.page()
    await bystander.add_init_script(RECORD_NOTIFICATIONS)
    await bystander.goto(f"{site.base_url}/faculty/generate/batch/{batch_id}")
    await expect(badge(bystander)).to_have_text("Paused")

    button = opted_in.locator("#notify button")
    await expect(button).to_have_text("Notify me when a batch ends")
    await expect(button).to_have_attribute("aria-pressed", "false")
    for page in (opted_in, bystander):
        assert await page.evaluate("window.__permissionRequests") == 0, "never asked for on load"
    await button.click()
    await expect(button).to_have_text("Notifications on")
    await expect(button).to_have_attribute("aria-pressed", "true")
    assert await opted_in.evaluate("localStorage.getItem('livebatch.notifications')") == "on"

    # A pause by a person notifies nobody; the end does.
    await site.post(batch_id, "resume")
    await expect(badge(opted_in)).to_have_text("Running")
    await site.post(batch_id, "pause")
    await expect(badge(opted_in)).to_have_text("Paused")
    await site.post(batch_id, "resume")
    await expect(badge(opted_in)).to_have_text("Completed")
    await opted_in.wait_for_function("() => window.__notifications.length > 0")
    assert await opted_in.evaluate("window.__notifications") == [
        {
            "title": "Cardiovascular Pathology: batch completed",
            "body": "5 of 5 items generated.",
            "tag": f"livebatch-{batch_id}-{(await site.batch(batch_id))['lastEventId']}",
        }
    ]
    await expect(badge(bystander)).to_have_text("Completed")
    assert await bystander.evaluate("window.__notifications") == []

    # Where the browser has not granted it, the button asks, once clicked, and says when it is refused.
    await bystander.locator("#notify button").click()
    await expect(bystander.locator("#notify button")).to_have_text("Notifications blocked")
    assert await bystander.evaluate("window.__permissionRequests") == 1
    await expect(bystander.locator('#notify [data-field="notify-note"]')).to_contain_text("browser's settings")


async def _dead_delivery(site: Site, user_id: UUID, batch_id: UUID) -> UUID:
    db = Database(site.settings.effective_database_url, pool_size=1, max_overflow=1)
    try:
        async with db.session() as session:
            delivery_id = await service.enqueue(
                session,
                user_id=user_id,
                batch_id=batch_id,
                event="batch.complete",
                event_seq=7,
                data={"status": "completed"},
                now=utcnow(),
            )
            delivery = await repository.get_delivery(session, delivery_id)
            assert delivery is not None
            delivery.status, delivery.attempts = "dead", 10
            delivery.last_error = "The receiver answered HTTP 503"
            await session.commit()
        return delivery_id
    finally:
        await db.dispose()


async def test_the_settings_page_sets_the_webhook_shows_the_secret_once_and_the_dead_deliveries(
    site: Site, screenshot: Screenshot
) -> None:
    page = await site.page()
    await page.goto(f"{site.base_url}/faculty/settings")
    await expect(page.get_by_role("link", name="Settings")).to_have_attribute("aria-current", "page")
    await expect(page.get_by_text("No delivery yet")).to_be_visible()
    await page.get_by_label("Webhook URL").fill("http://127.0.0.1:9/hook")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator('[data-field="webhook-error"]')).to_contain_text("not a public address")

    await page.get_by_label("Webhook URL").fill("https://hooks.example.org/livebatch")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator('[data-field="webhook-saved"]')).to_have_text("Saved.")
    secret = page.locator('[data-field="secret"]')
    await expect(secret).to_have_text(SECRET)
    first = await secret.text_content()

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.once("dialog", accept)
    await page.get_by_role("button", name="New secret").click()
    await expect(page.locator('[data-field="webhook-saved"]')).to_have_text("Saved, with a new secret.")
    await expect(secret).not_to_have_text(first or "")

    dead = await _dead_delivery(site, site.people["faculty"].user.id, uuid4())
    await page.reload()
    await expect(page.locator('[data-field="secret-box"]')).to_be_hidden()  # shown once, never again
    await expect(page.get_by_label("Webhook URL")).to_have_value("https://hooks.example.org/livebatch")
    row = page.locator(f'tr[data-delivery-id="{dead}"]')
    await expect(row).to_contain_text("Dead")
    await expect(row).to_contain_text("The receiver answered HTTP 503")
    await expect(page.locator(".badge-dead").first).to_have_text("1 dead")
    await screenshot(page, "settings")
    await row.get_by_role("button", name="Deliver again").click()
    await expect(page.locator(f'tr[data-delivery-id="{dead}"]')).to_have_attribute("data-status", "pending")
    assert await page.evaluate(CONTRAST_PROBLEMS) == []
