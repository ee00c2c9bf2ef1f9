"""What an embedded deployment leaves on disk, and who a sign-in link may be for (issue 19, item 10): the
database holds the answer keys, so it and its directory are the owner's alone; and `login-link` makes no
faculty account out of a mistyped address unless told to (`--create`)."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import RunCli
from tests.conftest import Backend


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual umask (022), with which files are world-readable unless created otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def embedded_only(backend: Backend) -> None:
    if backend.scaled:
        pytest.skip("the embedded deployment's files (SQLite under the data directory): runs without --backend")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _env(env_for: Callable[..., dict[str, str]], data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in env_for().items() if k not in ("LIVEBATCH_DATABASE_URL", "LIVEBATCH_DATA_DIR")}
    env.pop("LIVEBATCH_JWT_SECRET")  # generated and kept in the data directory, as on a fresh machine
    return env | {"LIVEBATCH_DATA_DIR": str(data_dir)}


@pytest.mark.usefixtures("loose_umask", "embedded_only")
def test_a_new_data_directory_and_its_database_are_the_owners_alone(
    run_cli: RunCli, env_for: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    data_dir = tmp_path / "fresh" / "livebatch"
    for command in (["login-link", "--create"], ["token"]):  # the token's secret is generated and kept there
        run = run_cli(*command, "--user", "ada@uni.example", env=_env(env_for, data_dir))
        assert run.returncode == 0, run.stderr
    database = data_dir / "livebatch.db"

    assert (_mode(data_dir), _mode(database), _mode(data_dir / "jwt-secret")) == (0o700, 0o600, 0o600)
    with sqlite3.connect(database) as connection:  # a reader in WAL mode makes SQLite open its -wal and -shm
        assert connection.execute("SELECT count(*) FROM users").fetchone() == (1,)
        for suffix in ("-wal", "-shm"):
            assert _mode(database.with_name(database.name + suffix)) == 0o600, suffix


@pytest.mark.usefixtures("embedded_only")
def test_login_link_for_an_unknown_address_asks_for_create_and_creates_nothing(
    run_cli: RunCli, env_for: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    env = _env(env_for, tmp_path / "data-dir")
    refused = run_cli("login-link", "--user", "Adaa@uni.example", env=env)
    assert refused.returncode == 2
    assert "No user adaa@uni.example" in refused.stdout and "--create" in refused.stdout
    assert "/auth/login?token=" not in refused.stdout
    database = tmp_path / "data-dir" / "livebatch.db"
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM users").fetchone() == (0,)

    created = run_cli("login-link", "--user", "ada@uni.example", "--create", env=env)
    assert created.returncode == 0 and "/auth/login?token=" in created.stdout
    again = run_cli("login-link", "--user", "ADA@uni.example", env=env)  # known now: no flag needed
    assert again.returncode == 0 and "/auth/login?token=" in again.stdout
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT email, role FROM users").fetchall() == [("ada@uni.example", "faculty")]
