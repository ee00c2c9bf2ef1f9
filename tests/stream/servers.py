"""`livebatch serve` for a whole module or package of tests, on its own database, in a subprocess.

Starting a server costs two seconds of CPU, and several times that in wall time on a loaded machine.
Tests that each make their own batches can share one; `serve` starts one with the given settings.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from livebatch.config import Settings
from livebatch.db import Database
from livebatch.users.models import Role
from tests.conftest import (
    JWT_SECRET,
    Backend,
    LiveProcess,
    Person,
    _admin,
    _with_database,
    make_person,
    seed_courses,
    settings_env,
)

FAST: dict[str, Any] = {
    "serve_metrics": True,  # the stream tests wait on figures of /metrics
    "offline_latency_ms": 10,
    "offline_failure_rate": 0.0,
    "batch_concurrency": 4,
    "progress_interval_ms": 50,
    "heartbeat_s": 0.5,
    "max_streams_per_user": 250,
    "max_running_batches_per_user": 50,
    "retry_base_ms": 20,
    "retry_max_ms": 100,
    "lease_s": 10.0,
    "dispatch_timeout_s": 5.0,
    "sweep_interval_s": 0.5,
    "db_pool_size": 4,
    "db_max_overflow": 16,
    "shutdown_grace_s": 0.5,
    "log_format": "text",
}


@dataclass
class Served:
    """A running server and the people who may call it."""

    process: LiveProcess
    settings: Settings
    people: dict[str, Person]

    @property
    def base_url(self) -> str:
        return self.process.base_url

    @property
    def port(self) -> int:
        assert self.process.port is not None
        return self.process.port

    def http(self, who: str | None = "faculty", **kwargs: Any) -> httpx.AsyncClient:
        """A client for the server, signed in as `who` (None: anonymous)."""
        headers = self.people[who].headers if who else {}
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=50)
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30, limits=limits, **kwargs)

    @asynccontextmanager
    async def database(self) -> AsyncIterator[Database]:
        """The server's database, to compare what a stream delivered with the event log."""
        db = Database(self.settings.effective_database_url, pool_size=2, max_overflow=2)
        try:
            yield db
        finally:
            await db.dispose()


@contextmanager
def _database(backend: Backend, directory: Path) -> Iterator[str]:
    if not backend.scaled:
        path = directory / "livebatch.db"
        shutil.copyfile(backend.template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    name = f"lbt_{uuid.uuid4().hex[:16]}"
    _admin(backend.pg_admin_url, f"CREATE DATABASE {name} TEMPLATE {backend.template}")
    try:
        yield _with_database(backend.pg_admin_url, name)
    finally:
        _admin(backend.pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def _people(settings: Settings) -> dict[str, Person]:
    db = Database(settings.effective_database_url, pool_size=1, max_overflow=1)
    try:
        async with db.session() as session:
            await seed_courses(session)
        return {
            "faculty": await make_person(db, settings, "ada@uni.example"),
            "other": await make_person(db, settings, "grace@uni.example"),
            "student": await make_person(db, settings, "sam@uni.example", Role.student),
        }
    finally:
        await db.dispose()


@contextmanager
def serve(backend: Backend, directory: Path, **overrides: Any) -> Iterator[Served]:
    """A server on a database of its own (with the demo courses and three people), fast settings plus
    `overrides`; when scaled out it also does the work, as `live_server` does."""
    with _database(backend, directory) as url:
        settings = Settings(
            data_dir=directory,
            database_url=url,
            redis_url=backend.redis_url or None,
            redis_prefix=f"lbt:{uuid.uuid4().hex[:12]}",
            jwt_secret=SecretStr(JWT_SECRET),
            **(FAST | overrides),
        )
        people = asyncio.run(_people(settings))
        args = ["serve", "--host", "127.0.0.1", "--port", "0"]  # the port is read from its log
        if backend.scaled:
            args.append("--worker")
        process = LiveProcess(args, settings_env(settings), directory / "serve.log", port=0)
        try:
            yield Served(process.start(), settings, people)
        finally:
            process.stop()
