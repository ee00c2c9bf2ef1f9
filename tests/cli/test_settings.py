"""The settings operators and other tools rely on are read from `LIVEBATCH_*` environment variables."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from livebatch import logs
from livebatch.cli import app
from livebatch.config import Settings
from livebatch.parts import Parts
from tests.cli.conftest import cli_env

REQUIRED = {
    "LIVEBATCH_DATABASE_URL": ("database_url", "postgresql+asyncpg://app@db.internal:5432/livebatch"),
    "LIVEBATCH_REDIS_URL": ("redis_url", "redis://cache.internal:6379/2"),
    "LIVEBATCH_PROVIDER": ("provider", "openai"),
    "LIVEBATCH_OFFLINE_LATENCY_MS": ("offline_latency_ms", 250),
    "LIVEBATCH_OFFLINE_FAILURE_RATE": ("offline_failure_rate", 0.1),
    "LIVEBATCH_MAX_ATTEMPTS": ("max_attempts", 5),
    "LIVEBATCH_JWT_SECRET": ("jwt_secret", "a-secret-from-the-environment-0123456789"),
    "LIVEBATCH_HEARTBEAT_S": ("heartbeat_s", 7.5),
}


def test_the_settings_the_issue_names_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LIVEBATCH_DATA_DIR", str(tmp_path))
    for variable, (_, value) in REQUIRED.items():
        monkeypatch.setenv(variable, str(value))
    settings = Settings()
    for variable, (field, value) in REQUIRED.items():
        read = getattr(settings, field)
        assert (read.get_secret_value() if field == "jwt_secret" else read) == value, variable
    assert settings.effective_database_url == REQUIRED["LIVEBATCH_DATABASE_URL"][1]
    assert settings.effective_jwt_secret == "a-secret-from-the-environment-0123456789"


def test_unset_means_the_embedded_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for variable in REQUIRED:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("LIVEBATCH_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{tmp_path / 'livebatch.db'}"
    assert settings.redis_url is None and settings.provider == "offline"
    assert (settings.max_attempts, settings.heartbeat_s) == (3, 15.0)
    parts = Parts(settings, worker=False)
    assert type(parts.queue.broker).__name__ == "InMemoryBroker" and type(parts.bus).__name__ == "LocalBus"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LIVEBATCH_PROVIDER", "claude"),
        ("LIVEBATCH_OFFLINE_FAILURE_RATE", "1.5"),
        ("LIVEBATCH_OFFLINE_LATENCY_MS", "-1"),
        ("LIVEBATCH_MAX_ATTEMPTS", "0"),
        ("LIVEBATCH_HEARTBEAT_S", "0"),
        ("LIVEBATCH_ITEM_PRIOR_MS", "0"),
    ],
)
def test_a_value_out_of_range_is_refused(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable.removeprefix("LIVEBATCH_").lower()):
        Settings()


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, 1500),  # the offline provider's mean latency, which is known
        ({"LIVEBATCH_OFFLINE_LATENCY_MS": "250"}, 250),
        ({"LIVEBATCH_OFFLINE_LATENCY_MS": "0"}, 1),  # never 0: a first ETA of 0 reads "done"
        ({"LIVEBATCH_PROVIDER": "openai"}, 30_000),  # a provider whose speed is not known here
        ({"LIVEBATCH_PROVIDER": "openai", "LIVEBATCH_ITEM_PRIOR_MS": "12000"}, 12_000),
        ({"LIVEBATCH_ITEM_PRIOR_MS": "4000"}, 4_000),
    ],
)
def test_the_item_prior_of_new_batches_is_the_setting_or_follows_the_provider(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variables: dict[str, str], expected: int
) -> None:
    for variable in ("LIVEBATCH_PROVIDER", "LIVEBATCH_OFFLINE_LATENCY_MS", "LIVEBATCH_ITEM_PRIOR_MS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("LIVEBATCH_DATA_DIR", str(tmp_path))
    for variable, value in variables.items():
        monkeypatch.setenv(variable, value)
    assert Parts(Settings(), worker=False).limits.item_prior_ms == expected


def test_the_jwt_secret_from_the_environment_signs_the_tokens_livebatch_mints(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "configure", lambda *args: None)  # keep pytest's log capture in place
    env = cli_env(settings, LIVEBATCH_JWT_SECRET="secret-from-the-environment-0123456789")
    result = CliRunner().invoke(app, ["token", "--user", "ada@uni.example"], env=env)
    assert result.exit_code == 0, result.output
    claims = jwt.decode(result.stdout.strip(), "secret-from-the-environment-0123456789", algorithms=["HS256"])
    assert claims["role"] == "faculty"
