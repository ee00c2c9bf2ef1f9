"""The database read-only for a while (SQLite: a full disk, a remount, an operator's chmod; PostgreSQL: a
standby, `default_transaction_read_only`): `/readyz` says so while it lasts, and writes work again as soon as
it ends, with no restart (issue 19, item 4).

A connection SQLite opens while its file is read-only stays read-only for good: kept in the pool, it would
fail every write after the files came back. The server runs with file permissions enforced on it: as root
(these tests' usual user) chmod stops nobody, so the server is started without the capabilities that let
root write past them (`setpriv --bounding-set -dac_override,...`)."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from livebatch.app import create_app
from livebatch.parts import Parts
from tests.api.conftest import BATCH
from tests.conftest import Backend, LiveProcess, Person, SettingsFactory, _admin, batch_body, settings_env

BURST = 20
DROP_CAPS = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]


@dataclass
class UnprivilegedServer(LiveProcess):
    """`livebatch serve`, for which file permissions hold even when the tests run as root."""

    prefix: list[str] = field(default_factory=list)

    def start(self, *, wait: bool = True) -> LiveProcess:
        with self.log_path.open("ab") as log:
            command = [*self.prefix, sys.executable, "-m", "livebatch", *self.args]
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self


def _privilege_drop() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: no way to make file permissions hold for the server")
    probe = subprocess.run([*DROP_CAPS, "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot drop root's file capabilities here: {probe.stderr.decode(errors='replace')}")
    return DROP_CAPS


def _set_read_only(path: Path, read_only: bool) -> None:
    """The database, its WAL files and their directory (no new file there either)."""
    files = [path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")]
    for file in (f for f in files if f.exists()):
        file.chmod(stat.S_IRUSR | stat.S_IRGRP | (0 if read_only else stat.S_IWUSR))
    path.parent.chmod(0o500 if read_only else 0o700)


async def _ready(http: httpx.AsyncClient) -> tuple[int, str]:
    answer = await http.get("/readyz")
    return answer.status_code, answer.json()["checks"]["database"]


async def _wait_ready(http: httpx.AsyncClient, status: int, timeout: float = 10) -> str:
    async with asyncio.timeout(timeout):
        while True:
            code, database = await _ready(http)
            if code == status:
                return database
            await asyncio.sleep(0.05)


async def _budget_burst(http: httpx.AsyncClient, batch_id: str) -> list[httpx.Response]:
    """Writes at once, each on its own connection to the server and so to the database pool."""
    path = f"{BATCH}/{batch_id}/budget"
    return await asyncio.gather(*(http.put(path, json={"tokens": 1000 + i}) for i in range(BURST)))


def _codes(answers: list[httpx.Response]) -> list[int]:
    return [a.status_code for a in answers]


def _assert_refused_in_words(answers: list[httpx.Response]) -> None:
    """A write the read-only database refused is a 503 that says so, never a 500."""
    refused = [a for a in answers if a.status_code == 503]
    assert refused, _codes(answers)
    for answer in refused:
        assert answer.json()["error"]["code"] == "UNAVAILABLE", answer.text
        assert "read-only" in answer.json()["error"]["message"], answer.text
        assert answer.headers["retry-after"] == "5"


@pytest.mark.usefixtures("embedded_only")
async def test_read_only_sqlite_files_are_not_ready_and_writes_recover_once_they_are_writable_again(
    make_settings: SettingsFactory, people: dict[str, Person], tmp_path: Path
) -> None:
    prefix = _privilege_drop()
    settings = make_settings(offline_latency_ms=60_000, batch_concurrency=1, db_pool_size=2, db_max_overflow=30)
    path = Path(settings.effective_database_url.removeprefix("sqlite+aiosqlite:///"))
    server = UnprivilegedServer(
        ["serve", "--host", "127.0.0.1", "--port", "0"],
        settings_env(settings),
        tmp_path / "serve.log",
        0,
        prefix=prefix,
    )
    limits = httpx.Limits(max_connections=BURST)
    headers = people["faculty"].headers
    try:
        server.start()
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=60, limits=limits) as http:
            created = await http.post(BATCH, json=batch_body(3))
            assert created.status_code == 201, created.text
            batch_id = created.json()["id"]
            assert (await _ready(http))[0] == 200

            _set_read_only(path, True)
            try:
                reason = await _wait_ready(http, 503)
                assert "read-only" in reason, reason
                # Opens connections while the files are read-only. The two the pool opened before still
                # write (chmod does not reach an open file); the others are refused in words, and the
                # connection each came on stays open for the next request.
                answers = await _budget_burst(http, batch_id)
                assert set(_codes(answers)) <= {200, 503}, server.log()
                _assert_refused_in_words(answers)
                assert (await _ready(http))[0] == 503
            finally:
                _set_read_only(path, False)

            await _wait_ready(http, 200)
            for _ in range(3):  # every pooled connection, used again
                assert _codes(await _budget_burst(http, batch_id)) == [200] * BURST, server.log()
            assert (await http.post(BATCH, json=batch_body(1))).status_code == 201
    finally:
        _set_read_only(path, False)
        server.kill()


@pytest.mark.usefixtures("scaled_only")
async def test_a_read_only_postgresql_is_not_ready_and_writes_recover_once_it_is_writable_again(
    parts: Parts, people: dict[str, Person], backend: Backend, database_url: str
) -> None:
    """Sessions opened while the database's default is read-only stay read-only after it is lifted: like
    SQLite's connections, kept in the pool they would refuse writes for good."""
    name = database_url.rpartition("/")[2]
    # The app in process, answering an unexpected error with its 500 rather than raising it into the test.
    transport = httpx.ASGITransport(app=create_app(parts=parts), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        client.headers.update(people["faculty"].headers)
        await _read_only_then_writable(client, backend, name)


async def _read_only_then_writable(client: httpx.AsyncClient, backend: Backend, name: str) -> None:
    created = await client.post(BATCH, json=batch_body(3))
    assert created.status_code == 201, created.text
    batch_id = created.json()["id"]

    await asyncio.to_thread(
        _admin, backend.pg_admin_url, f"ALTER DATABASE {name} SET default_transaction_read_only = on"
    )
    try:
        # The pool's sessions end; those opened from now on are read-only.
        terminate = f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        await asyncio.to_thread(_admin, backend.pg_admin_url, terminate)
        reason = await _wait_ready(client, 503)
        assert "read-only" in reason, reason
        # Fills the pool with read-only sessions, every write refused in words.
        answers = await _budget_burst(client, batch_id)
        assert _codes(answers) == [503] * BURST
        _assert_refused_in_words(answers)
    finally:
        lift = f"ALTER DATABASE {name} SET default_transaction_read_only = off"
        await asyncio.to_thread(_admin, backend.pg_admin_url, lift)

    await _wait_ready(client, 200)
    for _ in range(3):
        assert _codes(await _budget_burst(client, batch_id)) == [200] * BURST
