"""`livebatch run-batch`: a real subprocess configured by environment variables, run to the batch's end."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
from rich.console import Console
from sqlalchemy import func, select
from typer.testing import CliRunner

from livebatch.batches.models import Batch
from livebatch.cli import app
from livebatch.config import Settings
from livebatch.db import Database
from livebatch.headless import Guards, run_headless
from tests.batches.ledger import assert_attempts_accounted
from tests.checks import assert_consistent, event_log, wait_until
from tests.cli.conftest import BATCH_LINE, SUMMARY_LINE, RunCli
from tests.conftest import SettingsFactory
from tests.fakes.llm_server import FakeLLM

ARGUMENTS: dict[str, Any] = {
    "count": 5,
    "user": "ada@uni.example",
    "course": "course-uuid-1",
    "batch_id": None,
    "mix": (30, 50, 20),
}


async def test_a_200_item_batch_with_transient_failures_runs_to_its_end(
    run_cli: RunCli, env_for: Callable[..., dict[str, str]], db: Database
) -> None:
    env = env_for(
        {"batch_concurrency": 8},
        LIVEBATCH_PROVIDER="offline",
        LIVEBATCH_OFFLINE_LATENCY_MS="10",
        LIVEBATCH_OFFLINE_FAILURE_RATE="0.1",
        LIVEBATCH_MAX_ATTEMPTS="3",
    )
    began = time.monotonic()
    run = run_cli("run-batch", "--count", "200", env=env)
    wall = time.monotonic() - began
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    first = BATCH_LINE.search(run.stdout)
    assert first is not None and first["total"] == "200", run.stdout[:500]
    summary = run.summary()
    assert summary["id"] == first["id"]
    completed, failed = int(summary["completed"]), int(summary["failed"])
    assert completed + failed == int(summary["total"]) == 200
    assert summary["status"] == ("completed" if failed == 0 else "completed_with_errors")

    batch = await assert_consistent(db, first["id"])
    assert batch.completion_window == sorted(batch.completion_window), "completions timed out of order"
    assert (batch.completed_items, batch.failed_items, batch.pending_items, batch.in_progress_items) == (
        completed,
        failed,
        0,
        0,
    )
    ledger = await assert_attempts_accounted(db, batch.id, max_attempts=3)
    assert ledger.completed == completed and ledger.failed_for_good == failed
    # About one attempt in ten fails: with 200 items the retries are there to be checked.
    assert ledger.retried >= 5, ledger
    events = await event_log(db, batch.id)
    assert Counter(name for _, name, _ in events)["item.completed"] == completed
    assert events[-1][1] == "batch.complete"
    print(f"200 items in {wall:.1f}s wall: {ledger}")  # the figures for the report (pytest -s)
    assert UUID(first["id"]) == batch.id


async def test_a_batch_that_finished_with_item_errors_exits_0_and_lists_them(
    run_cli: RunCli, env_for: Callable[..., dict[str, str]], fake_llm: FakeLLM, db: Database
) -> None:
    fake_llm.queue("500")  # the first item's only attempt; the others succeed
    env = env_for(
        {"batch_concurrency": 1},
        LIVEBATCH_PROVIDER="openai",
        LIVEBATCH_OPENAI_BASE_URL=fake_llm.base_url,
        LIVEBATCH_MAX_ATTEMPTS="1",
    )
    run = run_cli("run-batch", "--count", "3", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = run.summary()
    assert (summary["status"], summary["completed"], summary["failed"]) == ("completed_with_errors", "2", "1")
    assert "#1 attempt 1: Provider error: HTTP 500: fake 500 (failed for good)" in run.stdout
    await assert_consistent(db, summary["id"])


async def test_a_rejected_api_key_exits_1_and_says_why(
    run_cli: RunCli, env_for: Callable[..., dict[str, str]], fake_llm: FakeLLM, db: Database
) -> None:
    fake_llm.default = "401"
    env = env_for(
        LIVEBATCH_PROVIDER="openai", LIVEBATCH_OPENAI_BASE_URL=fake_llm.base_url, LIVEBATCH_OPENAI_API_KEY="sk-wrong"
    )
    run = run_cli("run-batch", "--count", "3", env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.summary()["status"] == "failed"
    assert "The provider rejected the API key (HTTP 401): check LIVEBATCH_OPENAI_API_KEY." in run.stdout.splitlines()
    await assert_consistent(db, run.summary()["id"])


async def test_a_batch_whose_every_item_failed_ends_failed_with_status_1(
    make_settings: SettingsFactory, db: Database
) -> None:
    """In this process: the same code `run-batch` runs (the subprocess tests cover the wiring)."""
    printed = io.StringIO()
    code = await run_headless(
        make_settings(offline_failure_rate=1.0, max_attempts=1),
        Console(file=printed, width=200, soft_wrap=True),
        **ARGUMENTS,
    )
    assert code == 1
    lines = printed.getvalue().splitlines()
    assert SUMMARY_LINE.match(lines[-2]) and " failed: 0 completed, 5 failed of 5 " in lines[-2]
    assert lines[-1] == "All 5 items failed."
    assert sum("(failed for good)" in line for line in lines) == 5


async def test_bad_options_exit_2_with_a_clear_message_and_create_nothing(
    run_cli: RunCli, env_for: Callable[..., dict[str, str]], db: Database
) -> None:
    run = run_cli("run-batch", "--count", "0", env=env_for())
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stdout.strip().splitlines()[-1] == "--count: Input should be greater than or equal to 1"
    assert "Traceback" not in run.stdout + run.stderr
    async with db.read_session() as session:
        assert (await session.execute(select(func.count()).select_from(Batch))).scalar_one() == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        # The option's name, never the API's (`targetCount`): the person typed `--count`.
        ({"count": 2000}, "--count: must be at most 1000, not 2000."),
        ({"mix": (50, 50, 20)}, "--easy/--medium/--hard: easy + medium + hard must be 100, not 120"),
        ({"mix": (-10, 90, 20)}, "--easy/--medium/--hard: Input should be greater than or equal to 0"),
        ({"course": "no-such-course"}, "--course: Course 'no-such-course' does not exist."),
        ({"batch_id": "no-such-batch"}, "--batch: Batch no-such-batch does not exist."),
        ({"user": "not-an-email"}, "--user: 'not-an-email' is not an email address."),
        ({"guards": Guards(cost=-1.0)}, "--budget: Input should be greater than 0"),
        ({"guards": Guards(tokens=0)}, "--budget-tokens: Input should be greater than or equal to 1"),
        (
            {"guards": Guards(cost=1.0)},  # no price for the offline model in these settings
            "budget.cost needs a price for model 'offline' in LIVEBATCH_PRICES, or the cost could not be counted; "
            "give budget.tokens instead.",
        ),
    ],
)
async def test_each_bad_option_is_named_in_its_message(
    settings: Settings, db: Database, options: dict[str, Any], message: str
) -> None:
    """The same code `run-batch` runs, in this process (the subprocess test above covers the wiring)."""
    printed = io.StringIO()
    out = Console(file=printed, width=200, soft_wrap=True)
    code = await run_headless(settings, out, **(ARGUMENTS | options))
    assert code == 2
    assert printed.getvalue().strip().splitlines() == [message]
    async with db.read_session() as session:
        assert (await session.execute(select(func.count()).select_from(Batch))).scalar_one() == 0


def test_a_bad_setting_exits_2_naming_the_variable() -> None:
    result = CliRunner().invoke(
        app, ["run-batch"], env={"LIVEBATCH_PROVIDER": "gpt", "LIVEBATCH_OFFLINE_FAILURE_RATE": "1.5"}
    )
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        "LIVEBATCH_PROVIDER: Input should be 'offline' or 'openai'",
        "LIVEBATCH_OFFLINE_FAILURE_RATE: Input should be less than or equal to 1",
    ]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("{gpt-4o-mini: 0.15}", "LIVEBATCH_PRICES: not JSON (Expecting property name enclosed in double quotes"),
        ('{"gpt-4o-mini": {"input": -1, "output": 0.6}}', "LIVEBATCH_PRICES: gpt-4o-mini: input: Input should be"),
        ('{"gpt-4o-mini": {"input": 0.15}}', "LIVEBATCH_PRICES: gpt-4o-mini: output: Field required"),
    ],
)
def test_a_bad_price_table_exits_2_naming_the_variable(value: str, says: str) -> None:
    result = CliRunner().invoke(app, ["run-batch"], env={"LIVEBATCH_PRICES": value})
    assert result.exit_code == 2
    (line,) = result.stdout.splitlines()
    assert line.startswith(says), line


async def test_the_summary_line_says_what_the_batch_used_and_what_it_cost(
    run_cli: RunCli, env_for: Callable[..., dict[str, str]], db: Database
) -> None:
    prices = '{"offline": {"input": 0.15, "output": 0.60}}'
    run = run_cli("run-batch", "--count", "3", env=env_for(LIVEBATCH_PRICES=prices, LIVEBATCH_CURRENCY="EUR"))
    assert run.returncode == 0, run.stdout + run.stderr
    batch = await assert_consistent(db, run.summary()["id"])
    tokens = batch.prompt_tokens + batch.completion_tokens
    line = next(line for line in run.stdout.splitlines() if SUMMARY_LINE.match(line))
    assert line.endswith(f", {tokens:,} tokens, {batch.cost_nanos / 1e9:.4g} EUR"), line
    assert 900 < tokens < 2000 and batch.currency == "EUR"

    unpriced = run_cli("run-batch", "--count", "2", env=env_for())
    line = next(line for line in unpriced.stdout.splitlines() if SUMMARY_LINE.match(line))
    assert line.endswith(" tokens, cost unknown"), line


async def test_a_batch_that_spends_its_budget_pauses_and_run_batch_says_why(
    make_settings: SettingsFactory, db: Database
) -> None:
    """In this process, stopped by the test as a person would with Ctrl-C once it said why it waits."""
    printed = io.StringIO()
    run = asyncio.create_task(
        run_headless(
            make_settings(batch_concurrency=1),
            Console(file=printed, width=300, soft_wrap=True),
            **(ARGUMENTS | {"count": 10, "guards": Guards(tokens=500)}),
        )
    )

    async def says_why() -> bool:
        assert not run.done(), printed.getvalue()
        return "paused by its budget (500 tokens spent" in printed.getvalue()

    try:
        await wait_until(says_why)
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    async with db.read_session() as session:
        batch = (await session.execute(select(Batch))).scalar_one()
    assert (batch.status, batch.pause_reason) == ("paused", "budget_reached")
    assert batch.prompt_tokens + batch.completion_tokens >= 500 and batch.completed_items == 2
