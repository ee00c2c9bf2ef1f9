"""`make demo`: the server starts, a demo batch runs, and the sign-in link it prints lands on that batch's page."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from livebatch.batches import service
from livebatch.batches.status import ACTIVE
from livebatch.cli import DEMO_USER
from livebatch.courses.service import seed_demo_courses
from livebatch.db import Database
from livebatch.users.models import Role
from livebatch.users.service import ensure_user
from tests.batches.conftest import spec
from tests.checks import Unqueued, load_batch, wait_until
from tests.cli.conftest import LIVEBATCH
from tests.conftest import Backend, free_port

LINK = re.compile(r"(http://127\.0\.0\.1:\d+/auth/login\?token=\S+)")
DEMO_BATCH = re.compile(r"Demo batch (?P<id>[0-9a-f-]{36}): (?P<count>\d+) items")


async def _leave_demo_batches_running(db: Database, count: int) -> None:
    """What earlier demos stopped with Ctrl-C leave behind: active batches of the demo user."""
    async with Unqueued(db).begin() as uow:
        await seed_demo_courses(uow.session)
        owner = await ensure_user(uow.session, DEMO_USER, Role.faculty)
        for _ in range(count):
            await service.create_batch(uow, spec(1), owner=owner, limits=service.Limits(), now=owner.created_at)
        await uow.commit()


async def test_demo_starts_even_after_earlier_demos_and_its_link_lands_on_the_running_batch(
    backend: Backend, env_for: Callable[..., dict[str, str]], db: Database, tmp_path: Path
) -> None:
    if backend.scaled:
        pytest.skip("make demo runs the embedded default; scaled out, its work needs `livebatch worker`")
    await _leave_demo_batches_running(db, service.Limits().max_active_batches)
    port = free_port()
    env = env_for({"public_url": f"http://127.0.0.1:{port}"}, LIVEBATCH_OFFLINE_LATENCY_MS="20")
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        demo = subprocess.Popen(
            [LIVEBATCH, "demo", "--port", str(port), "--count", "6"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:

        async def link_printed() -> bool:
            assert demo.poll() is None, log.read_text()[-3000:]
            return LINK.search(log.read_text()) is not None

        await wait_until(link_printed, timeout=60)
        output = log.read_text()
        link = LINK.search(output)
        printed = DEMO_BATCH.search(output)
        assert link is not None and printed is not None, output
        batch_id = printed["id"]

        async with httpx.AsyncClient(timeout=10) as browser:
            page = await browser.get(link[1], follow_redirects=True)
            assert page.status_code == 200
            assert page.url.path == f"/faculty/generate/batch/{batch_id}"
            again = await browser.get(link[1])  # the link works once
            assert again.status_code == 401

        async def finished() -> bool:
            return (await load_batch(db, batch_id)).status not in ACTIVE

        await wait_until(finished, timeout=60)
        done = await load_batch(db, batch_id)
        assert done.completed_items == 6
        # The demo shows what a batch costs: its offline model is priced unless LIVEBATCH_PRICES says otherwise.
        assert "Prices (USD, LIVEBATCH_PRICES): offline: 0.15/0.6 per million tokens" in output
        assert done.cost_nanos > 0 and done.unpriced_attempts == 0 and done.prompt_tokens > 0

        demo.send_signal(signal.SIGINT)  # Ctrl-C
        assert await asyncio.to_thread(demo.wait, 30) == 0, log.read_text()[-3000:]
        assert "Traceback" not in log.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
