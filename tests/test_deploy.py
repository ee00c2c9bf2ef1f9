"""The example process layouts in deploy/ run commands that exist, with options the CLI accepts."""

from __future__ import annotations

import re
import shlex
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from livebatch.cli import app

DEPLOY = Path(__file__).parents[1] / "deploy"


def _parses(argv: list[str]) -> str:
    """The subcommand `argv` (after `livebatch`) runs; fails if the CLI would reject it. `--help` stops
    before running anything, but only after every option before it has been parsed."""
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, f"livebatch {shlex.join(argv)}: {result.output}"
    return argv[0]


def _procfile() -> dict[str, list[str]]:
    entries = {}
    for line in (DEPLOY / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            argv = shlex.split(command)
            assert argv[0] == "livebatch", line
            entries[name] = argv[1:]
    return entries


def test_the_procfile_runs_two_api_instances_and_three_workers_on_distinct_ports() -> None:
    entries = _procfile()
    kinds = Counter(_parses(argv) for argv in entries.values())
    assert kinds == {"serve": 2, "worker": 3}
    ports = [
        argv[argv.index(flag) + 1] for argv in entries.values() for flag in ("--port", "--metrics-port") if flag in argv
    ]
    assert len(ports) == len(set(ports)) == 5
    assert all("--no-worker" in argv for argv in entries.values() if argv[0] == "serve")


@pytest.mark.parametrize("unit", sorted(p.name for p in (DEPLOY / "systemd").glob("*.service")))
def test_each_systemd_unit_runs_a_valid_command(unit: str) -> None:
    text = (DEPLOY / "systemd" / unit).read_text()
    (exec_start,) = re.findall(r"^ExecStart=(.+)$", text, flags=re.MULTILINE)
    argv = shlex.split(exec_start.replace("%i", "1"))
    assert argv[0].endswith("/livebatch")
    _parses(argv[1:])
    assert "EnvironmentFile=/etc/livebatch/livebatch.env" in text


def test_the_target_starts_two_api_instances_and_three_workers() -> None:
    wants = re.findall(
        r"(livebatch-(?:api|worker)@\d+)\.service", (DEPLOY / "systemd" / "livebatch.target").read_text()
    )
    assert Counter(w.split("@")[0] for w in wants) == {"livebatch-api": 2, "livebatch-worker": 3}


def test_the_example_environment_names_only_real_settings() -> None:
    from livebatch.config import Settings

    names = re.findall(r"^LIVEBATCH_(\w+)=", (DEPLOY / "livebatch.env.example").read_text(), flags=re.MULTILINE)
    assert {"DATABASE_URL", "REDIS_URL", "JWT_SECRET"} <= set(names)
    assert {n.lower() for n in names} <= Settings.model_fields.keys()


@pytest.mark.parametrize("unit", ["livebatch-api@.service", "livebatch-worker@.service"])
def test_long_running_units_raise_the_open_file_limit(unit: str) -> None:
    (limit,) = re.findall(r"^LimitNOFILE=(\d+)$", (DEPLOY / "systemd" / unit).read_text(), flags=re.MULTILINE)
    assert int(limit) >= 16384  # every stream and connection is one descriptor; the default soft limit is 1024


def test_nginx_bounds_how_long_a_slow_client_holds_a_connection() -> None:
    text = (DEPLOY / "nginx.conf").read_text()
    for directive in ("client_header_timeout", "client_body_timeout", "send_timeout", "keepalive_timeout"):
        assert re.search(rf"^\s*{directive} \d+s;", text, flags=re.MULTILINE), directive
    # nginx must drop an idle upstream connection before the app does (LIVEBATCH_KEEP_ALIVE_S, 5 s by default).
    (upstream,) = re.findall(r"upstream livebatch \{(.*?)\}", text, flags=re.DOTALL)
    (seconds,) = re.findall(r"keepalive_timeout (\d+)s;", upstream)
    assert int(seconds) < 5
