"""How smooth the progress page stays while a 1000-item batch streams into it.

Starts `livebatch serve` on a scratch SQLite database (offline provider, 20 ms items, 8 at a time), opens
the batch's page in Debian's Chromium, resumes the batch and, until it ends, records the browser's long
tasks (main-thread work over 50 ms) and the gaps between animation frames. Figures, not assertions:

    .venv/bin/python bench/page_feed.py [--count 1000]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx
from playwright.sync_api import sync_playwright

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OBSERVE = """
window.__long = [];
new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__long.push(e.duration); })
  .observe({ type: "longtask", buffered: true });
window.__gaps = [];
let last = 0;
const tick = (t) => { if (last) window.__gaps.push(t - last); last = t; requestAnimationFrame(tick); };
requestAnimationFrame(tick);
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    count = parser.parse_args().count
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEBATCH_")}
        env |= {
            "LIVEBATCH_DATA_DIR": data,
            "LIVEBATCH_OFFLINE_LATENCY_MS": "20",
            "LIVEBATCH_OFFLINE_FAILURE_RATE": "0.05",
            "LIVEBATCH_BATCH_CONCURRENCY": "8",
            "LIVEBATCH_RETRY_BASE_MS": "50",
            "LIVEBATCH_RETRY_MAX_MS": "200",
            "LIVEBATCH_LOG_FORMAT": "text",
        }
        cli = [sys.executable, "-m", "livebatch"]
        subprocess.run([*cli, "course", "add", "--id", "course-uuid-1", "--title", "Cardiology"], env=env, check=True)
        token = subprocess.run(
            [*cli, "token", "--user", "bench@uni.example"], env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
        server = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    if httpx.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            run(base, token, count)
        finally:
            server.terminate()
            server.wait(10)


def run(base: str, token: str, count: int) -> None:
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"})
    mix = {"easy": 30, "medium": 50, "hard": 20}
    body = {"courseId": "course-uuid-1", "targetCount": count, "difficultyDistribution": mix}
    batch_id = api.post("/api/v1/generation/batch", json=body).json()["id"]
    api.post(f"/api/v1/generation/batch/{batch_id}/pause").raise_for_status()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        context.add_cookies([{"name": "livebatch_session", "value": token, "url": base}])
        page = context.new_page()
        page.add_init_script(OBSERVE)
        page.goto(f"{base}/faculty/generate/batch/{batch_id}")
        page.wait_for_selector('[data-phase="paused"]')
        page.evaluate("window.__long = []; window.__gaps = []")
        started = time.monotonic()
        api.post(f"/api/v1/generation/batch/{batch_id}/resume").raise_for_status()
        page.wait_for_selector('[data-phase="completed"], [data-phase="completed_with_errors"]', timeout=600_000)
        took = time.monotonic() - started
        long_tasks: list[float] = page.evaluate("window.__long")
        gaps: list[float] = sorted(page.evaluate("window.__gaps"))
        rows = page.evaluate("document.querySelectorAll('#feed-list > li').length")
        browser.close()
    load = os.getloadavg()[0]
    print(f"{count} items in {took:.1f} s, {rows} feed rows (load average {load:.1f} on {os.cpu_count()} cores)")
    print(
        f"long tasks: {len(long_tasks)}, {sum(long_tasks):.0f} ms in all, longest {max(long_tasks, default=0):.0f} ms"
    )
    print(
        f"frame gaps: p50 {gaps[len(gaps) // 2]:.1f} ms, p99 {gaps[int(len(gaps) * 0.99)]:.1f} ms, "
        f"max {gaps[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
