"""What the browser tests read off the progress page, and what they compare it with."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from playwright.async_api import Locator, Page, Route, expect

from tests.web.conftest import Site

COUNT_NAMES = ("completed", "in-progress", "failed", "pending")
FINISHED = r"^(Completed|Completed with errors|Failed|Cancelled)$"

# Records, from the first paint on, every value the bar took and every feed row inserted or removed.
OBSERVE_PAGE = """
window.__seen = { percentages: [], rowsAdded: 0, rowsRemoved: 0, announced: [] };
document.addEventListener("DOMContentLoaded", () => {
  const seen = window.__seen;
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      const live = m.target.nodeType === 1 ? m.target : m.target.parentElement;
      if (live && live.id === "announcer" && live.textContent) seen.announced.push(live.textContent);
      if (m.type === "attributes" && m.target.getAttribute("role") === "progressbar") {
        const value = Number(m.target.getAttribute("aria-valuenow"));
        if (seen.percentages.at(-1) !== value) seen.percentages.push(value);
      }
      if (m.type === "childList" && m.target.id === "feed-list") {
        seen.rowsAdded += [...m.addedNodes].filter((n) => n.nodeName === "LI").length;
        seen.rowsRemoved += [...m.removedNodes].filter((n) => n.nodeName === "LI").length;
      }
    }
  }).observe(document.body, {
    subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ["aria-valuenow"],
  });
});
"""

# Every visible text on the page whose contrast with its background is below WCAG AA.
CONTRAST_PROBLEMS = """
() => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[\\s,/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  const luminance = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0.5) return c;
    }
    return { r: 255, g: 255, b: 255, a: 1 };
  };
  const problems = [];
  const checked = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || checked.has(el)) continue;
    checked.add(el);
    if (el.closest("[hidden], .sr-only, :disabled")) continue;
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    if (box.width < 2 || box.height < 2 || style.visibility === "hidden") continue;
    const fg = parse(style.color);
    const bg = background(el);
    const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (Number(style.fontWeight) >= 700 && size >= 18.66);
    if (ratio < (large ? 3 : 4.5)) {
      const text = node.textContent.trim().slice(0, 40);
      problems.push(`${text}: ${ratio.toFixed(2)} (${style.color} on ${JSON.stringify(bg)})`);
    }
  }
  return problems;
}
"""


class Gate:
    """Holds matching requests back until `open()`: what the page shows meanwhile came without them."""

    def __init__(self) -> None:
        self.held: list[Route] = []
        self._open = asyncio.Event()

    async def __call__(self, route: Route) -> None:
        self.held.append(route)
        await self._open.wait()
        await route.continue_()

    def open(self) -> None:
        self._open.set()


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Waits for a condition on the test's side (a route handler having run, say), up to `timeout`."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def shown_counts(page: Page) -> dict[str, int]:
    counts: dict[str, int] = await page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('[data-count]')]"
        ".map((e) => [e.dataset.count, Number(e.textContent)]))"
    )
    return counts


async def shown_feed(page: Page) -> list[tuple[int, str]]:
    rows: list[list[Any]] = await page.evaluate(
        "() => [...document.querySelectorAll('#feed-list > li')]"
        ".map((li) => [Number(li.dataset.index), li.dataset.status])"
    )
    return [(int(index), str(status)) for index, status in rows]


def api_counts(detail: dict[str, Any]) -> dict[str, int]:
    s = detail["snapshot"]
    return {
        "completed": s["completedItems"],
        "in-progress": s["inProgressItems"],
        "failed": s["failedItems"],
        "pending": s["pendingItems"],
        "retrying": s["retryingItems"],  # a part of the pending ones, shown beside the counts
    }


def api_feed(detail: dict[str, Any]) -> list[tuple[int, str]]:
    return sorted((row["itemIndex"], row["status"]) for row in detail["items"])


def badge(page: Page) -> Locator:
    return page.locator('[data-field="status"]')


def connection(page: Page) -> Locator:
    return page.locator('[data-field="connection"]')


async def wait_for_count(page: Page, name: str, at_least: int) -> None:
    await page.wait_for_function(
        "([name, n]) => Number(document.querySelector(`[data-count='${name}']`)?.textContent) >= n",
        arg=[name, at_least],
    )


async def wait_for_rows(page: Page, at_least: int) -> None:
    await page.wait_for_function("(n) => document.querySelectorAll('#feed-list > li').length >= n", arg=at_least)


async def paused_batch(
    site: Site, count: int, *, mix: tuple[int, int, int] = (30, 50, 20), page: Page | None = None, **guards: Any
) -> tuple[str, Page]:
    """A batch paused as soon as it exists, on a page that shows it paused with nothing running: the
    test then decides when work happens (no race between the batch and the page loading). `guards` as for
    `Site.create_batch`."""
    batch_id = await site.create_batch(count, mix=mix, **guards)
    await site.post(batch_id, "pause")
    page = page or await site.page()
    await page.add_init_script(OBSERVE_PAGE)
    await page.goto(f"{site.base_url}/faculty/generate/batch/{batch_id}")
    await expect(badge(page)).to_have_text("Paused")
    await page.wait_for_function("() => document.querySelector(\"[data-count='in-progress']\")?.textContent === '0'")
    await expect(connection(page)).to_have_text("Live")
    return batch_id, page


async def assert_page_matches_api(page: Page, site: Site, batch_id: str) -> dict[str, Any]:
    detail = await site.batch(batch_id)
    assert await shown_counts(page) == api_counts(detail)
    feed = await shown_feed(page)
    assert feed == api_feed(detail)
    assert [index for index, _ in feed] == sorted({index for index, _ in feed}), "a row is doubled"
    percentage = str(detail["snapshot"]["percentage"])
    await expect(page.locator('[data-field="percentage"]')).to_have_text(percentage)
    await expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", percentage)
    return detail


# axe-core's rules, all of them; a test fails on any violation of impact serious or critical.
RUN_AXE = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).slice(0, 5).join(", ")}`);
}"""


async def accessibility_problems(page: Page, axe_source: str) -> list[str]:
    """The serious and critical violations axe-core finds on the page as it is now. Loaded through the
    DevTools protocol (`evaluate`), which the page's Content-Security-Policy does not stop, unlike a
    script tag; the page itself is left as it is served."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(axe_source + "\n;undefined")
    problems: list[str] = await page.evaluate(RUN_AXE)
    return problems
