"""Fixtures for both deployments.

`pytest` runs on the embedded default (SQLite file, in-process queue and bus). `pytest --backend=scaled`
runs the same tests on PostgreSQL and Redis: each test gets its own database, made from a migrated
template, and its own Redis key prefix. Under `CI=true` a missing server fails the run; elsewhere the
scaled tests are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.app import create_app
from livebatch.auth import mint_token
from livebatch.clock import utcnow
from livebatch.config import Settings
from livebatch.courses.service import seed_demo_courses
from livebatch.db import Database
from livebatch.migrate import upgrade
from livebatch.parts import Parts
from livebatch.users.models import Role, User
from livebatch.users.service import ensure_user

JWT_SECRET = "test-secret-0123456789-0123456789-0123456789"
COURSE = "course-uuid-1"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("livebatch")
    group.addoption("--backend", choices=("embedded", "scaled"), default="embedded", help="deployment to test")
    group.addoption("--pg-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    group.addoption("--redis-url", default="redis://127.0.0.1:6379/0")


@dataclass(frozen=True)
class Backend:
    kind: str
    pg_admin_url: str = ""
    redis_url: str = ""
    template: str = ""

    @property
    def scaled(self) -> bool:
        return self.kind == "scaled"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _admin(url: str, *statements: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def _missing_servers(config: pytest.Config) -> str | None:
    """Why the scaled run cannot run here, or None when PostgreSQL and Redis both answer."""
    pg_url, redis_url = config.getoption("--pg-url"), config.getoption("--redis-url")
    urls = {"PostgreSQL": httpx.URL(pg_url.replace("+asyncpg", "")), "Redis": httpx.URL(redis_url)}
    missing = [name for name, url in urls.items() if not _reachable(url.host, url.port or 0)]
    return f"--backend=scaled needs {' and '.join(missing)} ({pg_url}, {redis_url})" if missing else None


def pytest_sessionstart(session: pytest.Session) -> None:
    # Under CI a scaled run without its servers must fail as a whole, also when no collected test happens
    # to ask for them (elsewhere the tests that need them are skipped, with the reason).
    config = session.config
    if config.getoption("--backend") == "scaled" and os.environ.get("CI") == "true":
        missing = _missing_servers(config)
        if missing:
            pytest.exit(missing, returncode=pytest.ExitCode.TESTS_FAILED)


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    kind = request.config.getoption("--backend")
    if kind == "embedded":
        yield Backend("embedded", template=str(_sqlite_template(tmp_path_factory)))
        return
    pg_url, redis_url = request.config.getoption("--pg-url"), request.config.getoption("--redis-url")
    missing = _missing_servers(request.config)
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing, pytrace=False)
        pytest.skip(missing)
    template = f"lbt_template_{os.getpid()}"
    _admin(pg_url, f"DROP DATABASE IF EXISTS {template}", f"CREATE DATABASE {template}")
    upgrade(_with_database(pg_url, template))
    yield Backend("scaled", pg_admin_url=pg_url, redis_url=redis_url, template=template)
    _admin(pg_url, f"DROP DATABASE IF EXISTS {template} WITH (FORCE)")


def _sqlite_template(factory: pytest.TempPathFactory) -> Path:
    path = factory.mktemp("template") / "livebatch.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def database_url(backend: Backend, tmp_path: Path) -> Iterator[str]:
    if not backend.scaled:
        path = tmp_path / "data" / "livebatch.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(backend.template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    name = f"lbt_{uuid.uuid4().hex[:16]}"
    _admin(backend.pg_admin_url, f"CREATE DATABASE {name} TEMPLATE {backend.template}")
    yield _with_database(backend.pg_admin_url, name)
    _admin(backend.pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(backend: Backend, database_url: str, tmp_path: Path) -> Iterator[SettingsFactory]:
    """Settings for this test's database, fast enough for tests; keyword arguments override. The test's
    keys in the shared Redis (its queue stream) are deleted afterwards."""
    prefix = f"lbt:{uuid.uuid4().hex[:12]}"

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "redis_url": backend.redis_url or None,
            "redis_prefix": prefix,
            "jwt_secret": JWT_SECRET,
            "offline_latency_ms": 10,
            "offline_failure_rate": 0.0,
            "retry_base_ms": 20,
            "retry_max_ms": 100,
            "lease_s": 10.0,
            "dispatch_timeout_s": 5.0,
            "sweep_interval_s": 0.5,
            "progress_interval_ms": 50,
            "db_pool_size": 4,
            "db_max_overflow": 16,
            "shutdown_grace_s": 0.5,
            "log_format": "text",
            "serve_metrics": True,  # many tests wait on a figure of /metrics
        }
        values.update(overrides)
        return Settings(**values)

    yield make
    if backend.scaled:
        _delete_redis_keys(backend.redis_url, f"{prefix}:*")


def _delete_redis_keys(url: str, pattern: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings()


@pytest.fixture
async def parts(settings: Settings) -> AsyncIterator[Parts]:
    rt = Parts(settings, worker=True)
    await rt.start()
    yield rt
    await rt.aclose()


@pytest.fixture
async def client(parts: Parts) -> AsyncIterator[httpx.AsyncClient]:
    """The app in process, for plain JSON endpoints (ASGITransport buffers streams: SSE tests use
    `live_server`)."""
    app = create_app(parts=parts)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    """The database alone: for setting up data served by a server in another process."""
    database = Database(settings.effective_database_url, pool_size=2, max_overflow=4)
    yield database
    await database.dispose()


@dataclass
class Person:
    user: User
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def make_person(db: Database, settings: Settings, email: str, role: Role = Role.faculty) -> Person:
    async with db.session() as session:
        user = await ensure_user(session, email, role)
        await session.commit()
    return Person(user, mint_token(settings, user, now=utcnow()))


async def seed_courses(session: AsyncSession) -> None:
    await seed_demo_courses(session)
    await session.commit()


@pytest.fixture
async def people(db: Database, settings: Settings) -> dict[str, Person]:
    """A faculty member, another one, and a student; the demo courses exist."""
    async with db.session() as session:
        await seed_courses(session)
    return {
        "faculty": await make_person(db, settings, "ada@uni.example"),
        "other": await make_person(db, settings, "grace@uni.example"),
        "student": await make_person(db, settings, "sam@uni.example", Role.student),
    }


def batch_body(
    count: int = 5,
    *,
    course: str = COURSE,
    mix: tuple[int, int, int] = (30, 50, 20),
    error_rate_guard: bool | None = None,
    budget: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A batch as a client creates it; the guard fields only when given (a client that knows nothing of them)."""
    easy, medium, hard = mix
    body: dict[str, Any] = {
        "courseId": course,
        "targetCount": count,
        "questionType": "single-best-answer",
        "difficultyDistribution": {"easy": easy, "medium": medium, "hard": hard},
    }
    if error_rate_guard is not None:
        body["errorRateGuard"] = error_rate_guard
    if budget is not None:
        body["budget"] = budget
    return body


# --- a real server in a subprocess ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEBATCH_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, dict):
            value = json.dumps(value)  # as an operator writes it (LIVEBATCH_PRICES)
        env[f"LIVEBATCH_{name.upper()}"] = str(value)
    return env


@dataclass
class LiveProcess:
    """A `livebatch` subprocess (serve or worker) whose output goes to a log file."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    port: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> LiveProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "livebatch", *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        if wait and self.port is not None:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until /healthz answers. Port 0 lets the server bind any free port, read back from its log: a
        port picked here and bound there could be taken in between on this busy machine."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            if self.port == 0:
                bound = _BOUND.search(self.log_path.read_text(errors="replace"))
                if bound is None:
                    time.sleep(0.05)
                    continue
                self.port = int(bound.group(1))
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not up after {timeout}s:\n{self.log()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


_BOUND = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
LiveFactory = Callable[..., LiveProcess]


@pytest.fixture
def live_process(tmp_path: Path) -> Iterator[LiveFactory]:
    started: list[LiveProcess] = []

    def start(settings: Settings, *args: str, port: int | None = None, wait: bool = True) -> LiveProcess:
        name = f"{args[0]}-{len(started)}"
        proc = LiveProcess(list(args), settings_env(settings), tmp_path / f"{name}.log", port=port)
        started.append(proc)
        return proc.start(wait=wait)

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
def live_server(settings: Settings, live_process: LiveFactory, backend: Backend) -> LiveProcess:
    """`livebatch serve` on a free loopback port, doing its own item work (also when scaled out)."""
    args = ["serve", "--host", "127.0.0.1", "--port", "0"]
    if backend.scaled:
        args.append("--worker")
    return live_process(settings, *args, port=0)
