"""`livebatch prune --older-than 30d`: the logs of batches finished long ago shrink to their last event; the
batches, their items and every other log stay as they were."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from uuid import UUID

import pytest
from sqlalchemy import update

from livebatch.batches.models import Batch
from livebatch.db import Database
from livebatch.parts import Parts
from tests.batches.conftest import start_batch
from tests.checks import assert_consistent, event_log, load_batch, wait_for_status
from tests.cli.conftest import RunCli
from tests.conftest import Person, SettingsFactory

PRUNED = re.compile(r"^pruned (\d+) events of (\d+) batches finished before \d{4}-\d\d-\d\dT[\d:.]+Z$")


async def _finished_days_ago(db: Database, batch_id: UUID, days: int) -> None:
    batch = await load_batch(db, batch_id)
    assert batch.completed_at is not None
    async with db.session() as session:
        await session.execute(
            update(Batch).where(Batch.id == batch_id).values(completed_at=batch.completed_at - timedelta(days=days))
        )
        await session.commit()


async def test_prune_keeps_only_the_last_event_of_batches_finished_long_enough_ago(
    run_cli: RunCli,
    env_for: Callable[..., dict[str, str]],
    make_settings: SettingsFactory,
    people: dict[str, Person],
    db: Database,
) -> None:
    rt = Parts(make_settings(), worker=True)
    await rt.start()
    try:
        old_id = await start_batch(rt, people["faculty"], 3)
        recent_id = await start_batch(rt, people["faculty"], 3)
        for batch_id in (old_id, recent_id):
            await wait_for_status(rt, batch_id)
    finally:
        await rt.aclose()
    await _finished_days_ago(db, old_id, 31)
    await _finished_days_ago(db, recent_id, 29)
    recent_log = await event_log(db, recent_id)
    old_log = await event_log(db, old_id)

    run = run_cli("prune", "--older-than", "30d", env=env_for())
    assert run.returncode == 0, run.stdout + run.stderr
    (line,) = run.stdout.strip().splitlines()
    assert (match := PRUNED.match(line)), line
    assert (int(match[1]), int(match[2])) == (len(old_log) - 1, 1)

    assert await event_log(db, old_id) == old_log[-1:], "its batch.complete stays"
    assert (await load_batch(db, old_id)).pruned_through == old_log[-1][0] - 1
    assert await event_log(db, recent_id) == recent_log
    await assert_consistent(db, recent_id)

    again = run_cli("prune", "--older-than", "30d", env=env_for())
    assert again.stdout.strip().startswith("pruned 0 events of 0 batches"), again.stdout


@pytest.mark.parametrize("value", ["30", "thirty days", "30w", "-1d", "d"])
def test_a_duration_that_is_not_one_exits_2(
    run_cli: RunCli, env_for: Callable[..., dict[str, str]], value: str
) -> None:
    run = run_cli("prune", "--older-than", value, env=env_for())
    assert run.returncode == 2
    assert run.stdout.strip().splitlines()[-1] == (
        f"--older-than: {value!r} is not a duration like 30d, 12h, 90m or 45s"
    )
