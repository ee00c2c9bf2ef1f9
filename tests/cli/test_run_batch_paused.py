"""`run-batch --batch ID` on a paused batch says it waits for a resume, then runs the batch to its end."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

from livebatch.batches import service
from livebatch.cli import DEMO_USER
from livebatch.courses.service import seed_demo_courses
from livebatch.db import Database
from livebatch.users.models import Role
from livebatch.users.service import ensure_user
from tests.batches.conftest import spec
from tests.checks import Unqueued, assert_consistent, wait_until
from tests.cli.conftest import LIVEBATCH, SUMMARY_LINE


async def test_run_batch_on_a_paused_batch_says_so_and_finishes_once_resumed(
    env_for: Callable[..., dict[str, str]], db: Database, tmp_path: Path
) -> None:
    async with Unqueued(db).begin() as uow:
        await seed_demo_courses(uow.session)
        owner = await ensure_user(uow.session, DEMO_USER, Role.faculty)
        batch = await service.create_batch(uow, spec(4), owner=owner, limits=service.Limits(), now=owner.created_at)
        await service.pause_batch(uow, batch.id, user=owner, now=owner.created_at)
        await uow.commit()
    env = env_for({"dispatch_timeout_s": 0.5, "sweep_interval_s": 0.2})
    log = tmp_path / "run.log"
    with log.open("w") as out:
        run = subprocess.Popen([LIVEBATCH, "run-batch", "--batch", str(batch.id)], env=env, stdout=out, stderr=out)
    try:

        async def says(text: str) -> bool:
            assert run.poll() is None or text == "resumed", log.read_text()[-3000:]
            return text in log.read_text()

        await wait_until(lambda: says("paused: waiting for it to be resumed"), timeout=60)
        async with Unqueued(db).begin() as uow:  # resumed from elsewhere (the page, say)
            await service.resume_batch(uow, batch.id, user=owner, now=owner.created_at)
            await uow.commit()
        assert await asyncio.to_thread(run.wait, 60) == 0, log.read_text()[-3000:]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
    output = log.read_text()
    assert "resumed" in output
    summary = SUMMARY_LINE.search(output)
    assert summary is not None and (summary["status"], summary["completed"]) == ("completed", "4"), output
    await assert_consistent(db, batch.id)
