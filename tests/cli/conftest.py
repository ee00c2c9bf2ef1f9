"""Running the real `livebatch` console script in a subprocess, configured only by its environment."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from livebatch.config import Settings
from tests.conftest import SettingsFactory, settings_env
from tests.fakes.llm_server import FakeLLM

LIVEBATCH = str(Path(sys.executable).with_name("livebatch"))
BATCH_LINE = re.compile(r"^batch (?P<id>[0-9a-f-]{36}): (?P<total>\d+) items", re.MULTILINE)
SUMMARY_LINE = re.compile(
    r"^batch (?P<id>[0-9a-f-]{36}) (?P<status>\w+): (?P<completed>\d+) completed, (?P<failed>\d+) failed "
    r"of (?P<total>\d+)",
    re.MULTILINE,
)


def cli_env(settings: Settings, **env: str) -> dict[str, str]:
    """The environment of a `livebatch` process: these settings as `LIVEBATCH_*` variables, then `env`."""
    values = settings_env(settings)
    values.update(env)
    values["COLUMNS"] = "200"
    return values


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def summary(self) -> dict[str, str]:
        match = SUMMARY_LINE.search(self.stdout)
        assert match, f"no summary line in:\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"
        return match.groupdict()


RunCli = Callable[..., Run]


@pytest.fixture
def run_cli(tmp_path: Path) -> RunCli:
    """`livebatch ARGS` to its end (bounded), with exactly the given environment."""

    def run(*args: str, env: dict[str, str], timeout: float = 120) -> Run:
        done = subprocess.run(
            [LIVEBATCH, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, check=False
        )
        return Run(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def env_for(make_settings: SettingsFactory) -> Callable[..., dict[str, str]]:
    def make(overrides: dict[str, Any] | None = None, **env: str) -> dict[str, str]:
        return cli_env(make_settings(**(overrides or {})), **env)

    return make


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    """A real chat-completions server on loopback, reachable from a `livebatch` subprocess."""
    llm = FakeLLM().start()
    yield llm
    llm.stop()
