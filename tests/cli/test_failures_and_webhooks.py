"""The command line of issue 13: failures grouped by cause after `run-batch`, `failures` and `retry-failed` against a
server, and `webhook set | show | remove`. Real `livebatch` subprocesses, configured by their environment."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from livebatch.config import Settings
from livebatch.db import Database
from tests.checks import load_batch, wait_until
from tests.cli.conftest import RunCli, cli_env
from tests.conftest import LiveFactory, Person, SettingsFactory, batch_body
from tests.fakes.llm_server import FakeLLM

# Six items, two of each difficulty: the easy ones meet a provider error, the hard ones repeat an option.
MIXED = {"easy": "500", "hard": "duplicate"}
GROUP_LINE = re.compile(r"^\s+(\d+)  (\w+)\s+(.+?)  \[(\w+-[0-9a-f]{10})\]$", re.MULTILINE)


def _scripted(make_settings: SettingsFactory, fake_llm: FakeLLM, **overrides: Any) -> Settings:
    fake_llm.by_difficulty.update(MIXED)
    return make_settings(provider="openai", openai_base_url=fake_llm.base_url, max_attempts=2, **overrides)


def test_run_batch_ends_with_its_failures_grouped_by_cause(
    run_cli: RunCli, make_settings: SettingsFactory, fake_llm: FakeLLM
) -> None:
    env = cli_env(_scripted(make_settings, fake_llm))
    run = run_cli("run-batch", "--count", "6", "--easy", "34", "--medium", "33", "--hard", "33", env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.summary()["status"] == "completed_with_errors"
    assert "4 failed items by cause:" in run.stdout
    groups = sorted((kind, message, int(count)) for count, kind, message, _ in GROUP_LINE.findall(run.stdout))
    assert groups == [
        ("provider_error", "Provider error: HTTP …: fake …", 2),
        ("validation", "Validation failed: options … are identical", 2),
    ]


@pytest.fixture
def scripted_server(
    make_settings: SettingsFactory, fake_llm: FakeLLM, live_process: LiveFactory, backend: Any
) -> Iterator[tuple[Settings, str]]:
    settings = _scripted(make_settings, fake_llm)
    args = ["serve", "--host", "127.0.0.1", "--port", "0"] + (["--worker"] if backend.scaled else [])
    server = live_process(settings, *args, port=0)
    yield settings, server.base_url


async def test_failures_and_retry_failed_by_kind_against_a_server(
    scripted_server: tuple[Settings, str],
    fake_llm: FakeLLM,
    run_cli: RunCli,
    people: dict[str, Person],
    db: Database,
) -> None:
    settings, url = scripted_server
    faculty = people["faculty"]
    env = cli_env(settings)
    async with httpx.AsyncClient(base_url=url, headers=faculty.headers, timeout=30) as http:
        created = await http.post("/api/v1/generation/batch", json=batch_body(6, mix=(34, 33, 33)))
        batch_id = created.json()["id"]

        async def over(statuses: tuple[str, ...] = ("completed_with_errors",)) -> bool:
            return (await load_batch(db, batch_id)).status in statuses

        await wait_until(over, timeout=60)
        shown = run_cli("failures", batch_id, "--url", url, "--token", faculty.token, env=env)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[0] == f"batch {batch_id}: Cardiovascular Pathology, completed_with_errors"
        assert lines[1] == "4 failed items by cause:"
        detail = (await http.get(f"/api/v1/generation/batch/{batch_id}")).json()
        keys = {g["errorKind"]: g["key"] for g in detail["failureGroups"]}
        assert {(kind, key) for _, kind, _, key in GROUP_LINE.findall(shown.stdout)} == set(keys.items())

        nothing = run_cli(
            "retry-failed", batch_id, "--kind", "rate_limited", "--url", url, "--token", faculty.token, env=env
        )
        assert nothing.returncode == 1
        assert "409 INVALID_STATE: No failed item of this batch matches the filter" in nothing.stdout

        fake_llm.by_difficulty.pop("easy")  # the provider is fixed
        retried = run_cli(
            "retry-failed", batch_id, "--kind", "provider_error", "--url", url, "--token", faculty.token, env=env
        )
        assert retried.returncode == 0, retried.stdout + retried.stderr
        assert retried.stdout.strip() == f"batch {batch_id} running: 2 items to run again, 2 left failed"
        await wait_until(over, timeout=60)
        again = run_cli("failures", batch_id, "--url", url, "--token", faculty.token, env=env)
        assert [(kind, key) for _, kind, _, key in GROUP_LINE.findall(again.stdout)] == [
            ("validation", keys["validation"])
        ]
        batch = await load_batch(db, batch_id)
        assert (batch.completed_items, batch.failed_items) == (4, 2)


def test_webhook_set_show_and_remove(run_cli: RunCli, env_for: Callable[..., dict[str, str]]) -> None:
    env = env_for()
    user, url = "ada@uni.example", "https://hooks.example.org/livebatch"
    created = run_cli("webhook", "set", "--user", user, "--url", url, env=env)
    assert created.returncode == 0, created.stdout + created.stderr
    secret = re.search(r"^signing secret \(shown once, keep it\): (whsec_\S+)$", created.stdout, re.MULTILINE)
    assert secret is not None and f"webhook of {user}: {url}" in created.stdout
    moved = run_cli("webhook", "set", "--user", user, "--url", url + "/v2", env=env)
    assert "signing secret unchanged" in moved.stdout and "whsec_" not in moved.stdout
    rotated = run_cli("webhook", "set", "--user", user, "--url", url, "--rotate-secret", env=env)
    fresh = re.search(r"(whsec_\S+)$", rotated.stdout, re.MULTILINE)
    assert fresh is not None and fresh.group(1) != secret.group(1)

    refused = run_cli("webhook", "set", "--user", user, "--url", "http://169.254.169.254/latest", env=env)
    assert refused.returncode == 2 and "not a public address" in refused.stdout

    shown = run_cli("webhook", "show", "--user", user, env=env)
    assert shown.returncode == 0
    assert shown.stdout.splitlines()[0].startswith(f"webhook of {user}: {url} (since ")
    assert "no deliveries yet" in shown.stdout and "whsec_" not in shown.stdout

    assert run_cli("webhook", "remove", "--user", user, env=env).stdout.strip() == f"webhook of {user} removed"
    gone = run_cli("webhook", "show", "--user", user, env=env)
    assert (gone.returncode, gone.stdout.strip()) == (1, f"no webhook for {user}")
    assert run_cli("webhook", "remove", "--user", user, env=env).returncode == 1
