"""The progress page in Chromium: time to first render, and the longest main-thread task, running and finished.

A real `livebatch serve` (SQLite, offline provider) on loopback; Debian's Chromium through Playwright. First
render is measured in page time, from navigation start to the frame after the bar shows the batch's counts
and the feed holds its rows (a MutationObserver checks the DOM; the time is taken once the next frame has
been painted). Long tasks come from a buffered `longtask` PerformanceObserver (only tasks over 50 ms are
reported: a longest task of 0 means none); beside them, the CPU time of the longest main-thread task from a
Chromium trace, which waiting for a core on a busy machine does not inflate. Pages: a finished 10 000-item
batch (written in bulk, see page_data.py), a running 1 000-item batch while its item events arrive at about
100/s (offline latency and concurrency set for that; the rate the page received is reported too), and a
finished 10-item batch as the baseline of first render.

A finished page is loaded LOADS times, each in a fresh browser context (no cache): on two cores shared with
the server, a task's wall time depends on what else ran meanwhile, so its figures are the median load's,
with the worst load's longest task beside them.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from playwright.sync_api import Browser, Page, sync_playwright
from pydantic import SecretStr

from bench.common import CHROMIUM, CHROMIUM_ARGS, Figure, median, percentile
from bench.page_data import spec, write_finished_batch
from livebatch.auth import COOKIE, mint_token
from livebatch.clock import utcnow
from livebatch.config import Settings
from livebatch.courses.service import seed_demo_courses
from livebatch.db import Database
from livebatch.migrate import upgrade_async
from livebatch.users.models import Role
from livebatch.users.service import ensure_user

FEED_ROWS = 1000  # the page asks the batch API for at most this many feed rows
LOADS = 3
# About 100 item events/s: 12 items at a time of 200 ms each (0.5-1.5x), plus the server's own ~30 ms
# per item, is about 50 items/s, each an
# item.started and an item.completed, plus an item.failed and a new item.started per transient failure.
SERVER: dict[str, Any] = {
    "offline_latency_ms": 200,
    "offline_failure_rate": 0.02,
    "batch_concurrency": 12,
    "max_concurrency": 12,
    "retry_base_ms": 50,
    "retry_max_ms": 200,
    "max_target_count": 10_000,
    "max_running_batches_per_user": 100,
    "max_items_per_day": 1_000_000,  # the pages' batches together hold more than a user's daily quota
    "log_format": "text",
}
SECRET = "bench-page-secret-0123456789-0123456789"
TIMEOUT_MS = 120_000
FINISHED = "() => /^completed/.test(document.querySelector('.progress-page').dataset.phase)"

# Installed before the page's own scripts: long tasks, frame gaps, item events received, and the first
# moment the DOM matches `window.__expect` (then the frame after, once painted).
OBSERVE = """
window.__long = []; window.__gaps = []; window.__items = []; window.__render = null;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__long.push([e.startTime, e.duration]);
}).observe({ type: "longtask", buffered: true });
let last = 0;
const tick = (t) => { if (last) window.__gaps.push([t, t - last]); last = t; requestAnimationFrame(tick); };
requestAnimationFrame(tick);
const Native = window.EventSource;
window.EventSource = class extends Native {
  constructor(...args) {
    super(...args);
    for (const name of ["item.started", "item.completed", "item.failed"])
      this.addEventListener(name, () => window.__items.push(performance.now()));
  }
};
const EXPECT = %s;
const count = (name) => Number((document.querySelector(`[data-count="${name}"]`) || {}).textContent || 0);
function matches() {
  const shown = ["completed", "in-progress", "failed", "pending"].map(count);
  const rows = document.querySelectorAll("#feed-list > li").length;
  return shown.reduce((a, b) => a + b, 0) === EXPECT.total && shown[0] >= EXPECT.completed && rows >= EXPECT.rows;
}
const watcher = new MutationObserver(() => {
  if (!matches()) return;
  watcher.disconnect();
  const dom = performance.now();
  requestAnimationFrame(() => setTimeout(() => { window.__render = { dom, painted: performance.now() }; }));
});
watcher.observe(document, { subtree: true, childList: true, characterData: true });
"""


@dataclass(frozen=True)
class Load:
    """One page load: when it first showed the batch, and its long tasks up to then (ms, page time)."""

    dom_ms: float
    render_ms: float
    longest_ms: float
    longest_cpu_ms: float  # the same by the main thread's CPU time (trace): what a busy machine cannot inflate


def run(quick: bool) -> list[Figure]:
    running, finished = (60, 500) if quick else (1000, 10_000)
    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        data = Path(tmp)
        settings = Settings(data_dir=data, jwt_secret=SecretStr(SECRET), **SERVER)
        token, small_id, big_id = asyncio.run(_prepare(settings, [10, finished]))
        with _server(settings, data / "serve.log") as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                _open_finished(browser, base, token, small_id, 10)  # warms the server and the browser up
                smalls = [_open_finished(browser, base, token, small_id, 10) for _ in range(LOADS)]
                bigs = [_open_finished(browser, base, token, big_id, finished) for _ in range(LOADS)]
                live = _follow_running(browser, base, token, running)
            finally:
                browser.close()
    first, stream = live
    small, big = _median_load(smalls), _median_load(bigs)
    worst_small, worst_big = (max(load.longest_ms for load in loads) for loads in (smalls, bigs))
    big_name, run_name = f"finished {finished:,}-item", f"running {running:,}-item"
    return [
        Figure(f"first render, {big_name} batch", big.render_ms, "ms", small.render_ms, ("<", 1000)),
        Figure(f"longest task, {big_name} page load", big.longest_ms, "ms", small.longest_ms, ("<", 50)),
        Figure(f"longest task, {big_name} page load, worst of {LOADS}", worst_big, "ms", worst_small),
        Figure(f"longest task CPU time (trace), {big_name} page load", big.longest_cpu_ms, "ms", small.longest_cpu_ms),
        Figure(f"first render, {run_name} batch", first.render_ms, "ms", small.render_ms, ("<", 1000)),
        Figure(f"longest task, {run_name} page load", first.longest_ms, "ms", small.longest_ms),
        Figure("longest task while item events arrive", stream.longest_ms, "ms", None, ("<", 50)),
        Figure("longest task CPU time (trace), while item events arrive", stream.longest_cpu_ms, "ms"),
        Figure("item events received by the page", stream.events_per_s, "events/s"),
        Figure("frame gap p99 while item events arrive", stream.gap_p99_ms, "ms"),
    ]


def _median_load(loads: list[Load]) -> Load:
    """Each figure's median over the loads."""
    return Load(
        median([load.dom_ms for load in loads]),
        median([load.render_ms for load in loads]),
        median([load.longest_ms for load in loads]),
        median([load.longest_cpu_ms for load in loads]),
    )


async def _prepare(settings: Settings, finished: list[int]) -> tuple[str, UUID, UUID]:
    """The schema, the demo courses, a faculty member and their finished batches; returns a token and ids."""
    await upgrade_async(settings.effective_database_url)
    db = Database(settings.effective_database_url, pool_size=1, max_overflow=1)
    try:
        async with db.session() as session:
            await seed_demo_courses(session)
            user = await ensure_user(session, "bench@uni.example", Role.faculty)
            await session.commit()
        ids = [await write_finished_batch(db, user.id, count) for count in finished]
    finally:
        await db.dispose()
    return mint_token(settings, user, now=utcnow()), ids[0], ids[1]


@contextmanager
def _server(settings: Settings, log_path: Path) -> Iterator[str]:
    """`livebatch serve` on a port of its choosing; yields its base URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEBATCH_")}
    env |= {f"LIVEBATCH_{k.upper()}": str(v) for k, v in SERVER.items()}
    env |= {"LIVEBATCH_DATA_DIR": str(settings.data_dir), "LIVEBATCH_JWT_SECRET": SECRET}
    with log_path.open("ab") as log:
        cmd = [sys.executable, "-m", "livebatch", "serve", "--host", "127.0.0.1", "--port", "0"]
        process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield _wait_ready(process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_ready(process: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"livebatch serve exited: {log_path.read_text(errors='replace')[-3000:]}")
        bound = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log_path.read_text(errors="replace"))
        if bound is not None:
            try:
                if httpx.get(f"{bound.group(1)}/healthz", timeout=2).status_code == 200:
                    return bound.group(1)
            except httpx.TransportError:
                pass
        time.sleep(0.05)
    raise TimeoutError("livebatch serve did not start in 60 s")


def _open(browser: Browser, base: str, token: str, batch_id: UUID, expect: dict[str, int]) -> tuple[Page, Load]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.add_cookies([{"name": COOKIE, "value": token, "url": base}])
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.add_init_script(OBSERVE % json.dumps(expect))
    browser.start_tracing(page=page, categories=["toplevel"])
    page.goto(f"{base}/faculty/generate/batch/{batch_id}")
    render: dict[str, float] = page.wait_for_function("() => window.__render").json_value()
    # Two more frames: a task that ends the render shows up in the buffer only after it has ended.
    page.evaluate("new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(ok))))")
    cpu = longest_task_cpu_ms(browser.stop_tracing())
    tasks: list[list[float]] = page.evaluate("window.__long")
    if errors:
        raise RuntimeError(f"errors in the page: {errors}")
    return page, Load(render["dom"], render["painted"], max((d for _, d in tasks), default=0.0), cpu)


def _open_finished(browser: Browser, base: str, token: str, batch_id: UUID, count: int) -> Load:
    page, load = _open(
        browser, base, token, batch_id, {"total": count, "completed": count, "rows": min(count, FEED_ROWS)}
    )
    page.context.close()
    return load


@dataclass(frozen=True)
class Streamed:
    """A page while item events arrive: its longest task (wall and CPU ms), the rate, the frame gaps."""

    longest_ms: float
    longest_cpu_ms: float
    events_per_s: float
    gap_p99_ms: float


def _follow_running(browser: Browser, base: str, token: str, count: int) -> tuple[Load, Streamed]:
    """Starts a batch, opens its page once a fifth is done, and watches it to the end: the first render,
    then, after it, the longest task, the item events/s received and the p99 gap between frames."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as api:
        created = api.post("/api/v1/generation/batch", json=spec(count))
        created.raise_for_status()
        batch_id = UUID(created.json()["id"])
        done = 0
        while done < count // 5:
            done = api.get(f"/api/v1/generation/batch/{batch_id}", params={"feed": 0}).json()["snapshot"][
                "completedItems"
            ]
            time.sleep(0.05)
    page, load = _open(browser, base, token, batch_id, {"total": count, "completed": done, "rows": done})
    browser.start_tracing(page=page, categories=["toplevel"])
    # Polled twice a second: Playwright's own selector polling would run in every frame we measure.
    page.wait_for_function(FINISHED, polling=500)
    end: float = page.evaluate("performance.now()")
    cpu = longest_task_cpu_ms(browser.stop_tracing())
    tasks: list[list[float]] = page.evaluate("window.__long")
    items: list[float] = page.evaluate("window.__items")
    gaps: list[list[float]] = page.evaluate("window.__gaps")
    page.context.close()
    start = load.render_ms
    streamed = [t for t in items if t > start]
    # The rate over the span the events actually arrived in (the batch's end is its last item event).
    span = (streamed[-1] - start) / 1000 if streamed else math.nan
    longest = max((d for s, d in tasks if s + d > start and s < end), default=0.0)
    gap = percentile([g for t, g in gaps if start < t <= end], 99)
    return load, Streamed(longest, cpu, len(streamed) / span, gap)


def longest_task_cpu_ms(trace: bytes) -> float:
    """The CPU time of the longest task on the busiest renderer main thread of a Chromium trace."""
    loaded = json.loads(trace)
    events: list[dict[str, Any]] = loaded["traceEvents"] if isinstance(loaded, dict) else loaded
    mains = {
        (e["pid"], e["tid"]) for e in events if e.get("name") == "thread_name" and e["args"]["name"] == "CrRendererMain"
    }
    tasks: dict[tuple[int, int], list[float]] = {main: [] for main in mains}
    for e in events:
        if e.get("name") == "ThreadControllerImpl::RunTask" and (e.get("pid"), e.get("tid")) in tasks:
            tasks[(e["pid"], e["tid"])].append(e.get("tdur", 0) / 1000)
    busiest = max(tasks.values(), key=sum, default=[])
    return max(busiest, default=0.0)
