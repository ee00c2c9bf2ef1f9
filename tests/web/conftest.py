"""Fixtures for the pages: Debian's Chromium (one per session, driven by Playwright's async API), a real
`livebatch serve`, and the fake LLM server as its provider, so that latency and failures are scripted
per request rather than left to chance.

The async API, not the sync one: the sync API marks its event loop as running in the main thread
between calls, which breaks every other fixture that runs asyncio (the database ones). Browser tests
and their fixtures therefore share the session's event loop (`loop_scope="session"`).

Most tests share one server per session (starting one costs seconds on a loaded machine); each gets its
own faculty member, so nothing one test does shows on another's pages. A test that stops the server
(`private_site`) gets its own.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from pydantic import SecretStr

from livebatch.auth import COOKIE
from livebatch.config import ModelPrice, Settings
from livebatch.db import Database
from tests.conftest import (
    JWT_SECRET,
    Backend,
    LiveFactory,
    LiveProcess,
    Person,
    SettingsFactory,
    batch_body,
    free_port,
    make_person,
    seed_courses,
    settings_env,
)
from tests.conftest import _admin as pg_admin
from tests.conftest import _with_database as with_database
from tests.fakes.llm_server import FakeLLM

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).parents[2]
ARTIFACTS = ROOT / "artifacts"
DESKTOP = (1280, 900)
PHONE = (390, 844)
# axe-core, fetched (pinned, checked) by `make test` into .vendor/: nothing is downloaded while tests run.
AXE_SCRIPTS = sorted((ROOT / ".vendor").glob("axe-core-*/axe.min.js"))
SCREENSHOTS = ARTIFACTS / "screenshots"
ITEM_LATENCY = "timeout:0.2"  # the fake LLM answers each item after 200 ms
WAIT_MS = 30_000  # a condition on a loaded 2-core machine: generous, and only ever the upper bound
# The page's tests need: two items at a time (a feed that moves visibly), two attempts per item,
# short leases (a restarted server takes over lost work quickly), no per-user batch limit in the way.
SERVER_SETTINGS: dict[str, Any] = {
    "provider": "openai",
    "prices": {"gpt-4o-mini": ModelPrice(input=0.15, output=0.60)},  # the fake's answers have a cost to show
    "batch_concurrency": 2,
    "max_attempts": 2,
    "lease_s": 2.0,
    "heartbeat_s": 5.0,
    "max_running_batches_per_user": 100,
    "serve_metrics": True,
}

expect.set_options(timeout=WAIT_MS)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        message = f"the browser tests need Debian's Chromium at {CHROMIUM} (make test installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@dataclass
class Server:
    process: LiveProcess
    settings: Settings
    fake: FakeLLM

    def reset(self) -> None:
        """The fake back to plain, slightly slow answers, between tests."""
        self.fake.script.clear()
        self.fake.by_difficulty.clear()
        self.fake.default = ITEM_LATENCY
        self.fake.fail_randomly(0.0, ("ok",))  # no random failures left over from a test


def _serve(settings: Settings, backend: Backend, port: int, log: Path) -> LiveProcess:
    args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    if backend.scaled:
        args.append("--worker")
    return LiveProcess(args, settings_env(settings), log, port=port).start()


@pytest.fixture(scope="session")
def shared_server(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `livebatch serve` for the session's browser tests, on a database of its own."""
    data = tmp_path_factory.mktemp("web-server")
    fake = FakeLLM(default=ITEM_LATENCY).start()
    if backend.scaled:
        name = f"lbt_web_{uuid.uuid4().hex[:12]}"
        pg_admin(backend.pg_admin_url, f"CREATE DATABASE {name} TEMPLATE {backend.template}")
        url = with_database(backend.pg_admin_url, name)
    else:
        shutil.copyfile(backend.template, data / "livebatch.db")
        url = f"sqlite+aiosqlite:///{data / 'livebatch.db'}"
    port = free_port()
    settings = Settings(
        data_dir=data,
        database_url=url,
        redis_url=backend.redis_url or None,
        redis_prefix=f"lbt:{uuid.uuid4().hex[:12]}",
        jwt_secret=SecretStr(JWT_SECRET),
        openai_base_url=fake.base_url,
        public_url=f"http://127.0.0.1:{port}",
        retry_base_ms=20,
        retry_max_ms=100,
        dispatch_timeout_s=5.0,
        sweep_interval_s=0.5,
        progress_interval_ms=50,
        shutdown_grace_s=0.5,
        log_format="text",
        **SERVER_SETTINGS,
    )
    process = _serve(settings, backend, port, data / "serve.log")
    try:
        yield Server(process, settings, fake)
    finally:
        process.kill()
        fake.stop()
        if backend.scaled:
            pg_admin(backend.pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def private_server(
    request: pytest.FixtureRequest, backend: Backend, make_settings: SettingsFactory, live_process: LiveFactory
) -> Iterator[Server]:
    """A server of the test's own, for a test that stops and restarts it; settings of its own too, given
    indirectly (`@pytest.mark.parametrize("private_server", [{"heartbeat_s": 1.0}], indirect=True)`)."""
    fake = FakeLLM(default=ITEM_LATENCY).start()
    port = free_port()
    overrides = SERVER_SETTINGS | getattr(request, "param", {})
    settings = make_settings(openai_base_url=fake.base_url, public_url=f"http://127.0.0.1:{port}", **overrides)
    args = ["serve", "--host", "127.0.0.1", "--port", str(port)] + (["--worker"] if backend.scaled else [])
    process = live_process(settings, *args, port=port)
    try:
        yield Server(process, settings, fake)
    finally:
        process.kill()
        fake.stop()


@dataclass
class Site:
    """A running server as one faculty member (a new one per test) sees it, plus the browser."""

    server: Server
    people: dict[str, Person]
    backend: Backend
    browser: Browser
    http: httpx.AsyncClient
    contexts: list[BrowserContext] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.server.process.base_url

    @property
    def fake(self) -> FakeLLM:
        return self.server.fake

    @property
    def settings(self) -> Settings:
        return self.server.settings

    async def create_batch(self, count: int, *, mix: tuple[int, int, int] = (30, 50, 20), **guards: Any) -> str:
        """`guards`: `budget={...}`, `error_rate_guard=False` (issue 13)."""
        response = await self.http.post("/api/v1/generation/batch", json=batch_body(count, mix=mix, **guards))
        assert response.status_code == 201, response.text
        batch_id: str = response.json()["id"]
        return batch_id

    async def batch(self, batch_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/api/v1/generation/batch/{batch_id}")
        assert response.status_code == 200, response.text
        detail: dict[str, Any] = response.json()
        return detail

    async def post(self, batch_id: str, action: str) -> None:
        response = await self.http.post(f"/api/v1/generation/batch/{batch_id}/{action}")
        assert response.status_code == 200, response.text

    async def page(
        self, person: str = "faculty", *, signed_in: bool = True, viewport: tuple[int, int] = (1100, 900)
    ) -> Page:
        """A new browser context (its own cookies), signed in as `person` with the session cookie that
        the sign-in link sets; `viewport` is its window (`PHONE`, say)."""
        width, height = viewport
        context = await self.browser.new_context(viewport={"width": width, "height": height})
        self.contexts.append(context)
        if signed_in:
            token = self.people[person].token
            await context.add_cookies([{"name": COOKIE, "value": token, "url": self.base_url}])
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        return page

    async def open_batch(self, batch_id: str, person: str = "faculty") -> Page:
        page = await self.page(person)
        await page.goto(f"{self.base_url}/faculty/generate/batch/{batch_id}")
        return page


@asynccontextmanager
async def _site(server: Server, backend: Backend, browser: Browser) -> AsyncIterator[Site]:
    server.reset()
    people = await _new_people(server.settings)
    headers = people["faculty"].headers
    async with httpx.AsyncClient(base_url=server.process.base_url, headers=headers, timeout=30) as http:
        site = Site(server, people, backend, browser, http)
        try:
            yield site
        finally:
            for context in site.contexts:
                await context.close()
            await _cancel_active(site)
    assert site.page_errors == [], f"uncaught errors in the page: {site.page_errors}"


async def _cancel_active(site: Site) -> None:
    """Leaves the shared server idle for the next test: a batch still running would slow it down."""
    try:
        batches = (await site.http.get("/api/v1/generation/batches", params={"limit": 100})).json()["batches"]
        for batch in batches:
            if batch["status"] in ("queued", "running", "paused"):
                await site.http.post(f"/api/v1/generation/batch/{batch['id']}/cancel")
    except httpx.TransportError:
        pass  # the server is down: it has nothing running either


@pytest_asyncio.fixture(loop_scope="session")
async def site(shared_server: Server, backend: Backend, browser: Browser) -> AsyncIterator[Site]:
    async with _site(shared_server, backend, browser) as current:
        yield current


@pytest_asyncio.fixture(loop_scope="session")
async def private_site(private_server: Server, backend: Backend, browser: Browser) -> AsyncIterator[Site]:
    async with _site(private_server, backend, browser) as current:
        yield current


async def _new_people(settings: Settings) -> dict[str, Person]:
    """A faculty member of the test's own, another one, and a student; the demo courses exist."""
    tag = uuid.uuid4().hex[:8]
    db = Database(settings.effective_database_url, pool_size=1, max_overflow=2)
    try:
        async with db.session() as session:
            await seed_courses(session)
        return {
            "faculty": await make_person(db, settings, f"ada-{tag}@uni.example"),
            "other": await make_person(db, settings, f"grace-{tag}@uni.example"),
        }
    finally:
        await db.dispose()


@pytest.fixture
def screenshot(backend: Backend) -> Callable[[Page, str], Awaitable[Path]]:
    """Saves a screenshot under artifacts/screenshots/ (ignored by git), named for the state and backend."""

    async def take(page: Page, name: str, *, full_page: bool = True) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}-{backend.kind}.png"
        await page.screenshot(path=str(path), full_page=full_page)
        return path

    return take


def record_metric(name: str, value: float, backend: Backend) -> None:
    """Figures worth reporting (not asserted: timing claims belong to bench/), kept in artifacts/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "web-metrics.json"
    metrics: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    metrics[f"{name}[{backend.kind}]"] = round(value, 1)
    path.write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, as `make test` vendored it."""
    if not AXE_SCRIPTS:
        message = "the accessibility checks need axe-core in .vendor/ (make test fetches it: make axe)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return AXE_SCRIPTS[-1].read_text()
