"""A JWT secret anyone could guess signs anyone's token: the example file's placeholder, an empty secret or a
short one must stop the server before it serves a request (exit 2, a message naming the variable), while
no secret at all still means one generated and kept in the data directory (`make demo`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from livebatch.config import Settings
from tests.conftest import settings_env

EXAMPLE = Path(__file__).parents[2] / "deploy" / "livebatch.env.example"


def _example_secret() -> str:
    (line,) = [line for line in EXAMPLE.read_text().splitlines() if line.startswith("LIVEBATCH_JWT_SECRET=")]
    return line.partition("=")[2]


@pytest.mark.parametrize(
    ("case", "secret"),
    [
        ("the example file's placeholder", _example_secret()),
        ("empty", ""),
        ("one character", "x"),
        ("31 bytes", "k" * 31),
    ],
)
def test_serve_refuses_a_weak_jwt_secret_before_serving(
    case: str, secret: str, settings: Settings, tmp_path: Path
) -> None:
    env = settings_env(settings) | {"LIVEBATCH_JWT_SECRET": secret}
    done = subprocess.run(
        [sys.executable, "-m", "livebatch", "serve", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, f"{case}: exit {done.returncode}\n{output[-2000:]}"
    assert "LIVEBATCH_JWT_SECRET" in output and "Uvicorn running" not in output, output[-2000:]
    assert len(secret) < 8 or secret not in output, "the refused secret must not be printed"


def test_no_secret_means_a_generated_one_that_is_long_enough(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)  # what `make demo` runs with
    assert settings.jwt_secret is None
    assert len(settings.effective_jwt_secret.encode()) >= 32
    assert Settings(data_dir=tmp_path).effective_jwt_secret == settings.effective_jwt_secret  # kept
