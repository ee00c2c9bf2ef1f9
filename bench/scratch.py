"""Scratch databases for the benchmarks: a migrated SQLite file or PostgreSQL database, made and dropped here.

The PostgreSQL one is a database of its own (`lbbench_<pid>_<random>`) on the shared server, so nothing of
anyone else's is read or touched, and it is dropped (WITH FORCE) however the benchmark ends.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import asyncpg
from sqlalchemy import case, delete, func, insert, literal, select, update

from bench.common import PG_URL
from livebatch.batches import service
from livebatch.batches.models import Batch, Item
from livebatch.batches.schemas import BatchCreate, DifficultyDistribution
from livebatch.batches.service import Limits
from livebatch.clock import utcnow
from livebatch.config import Settings
from livebatch.courses.service import DEMO_COURSES, seed_demo_courses
from livebatch.db import Database
from livebatch.events.bus import LocalBus
from livebatch.migrate import upgrade_async
from livebatch.uow import Transactions
from livebatch.users.models import Role, User
from livebatch.users.service import ensure_user

Kind = Literal["sqlite", "postgresql"]
COURSE = DEMO_COURSES[0][0]
JWT_SECRET = "bench-secret-0123456789-0123456789-0123456789"


class _Nowhere:
    """A work queue that queues nothing: batches made here are data, not work."""

    async def enqueue(self, item_ids: Sequence[uuid.UUID]) -> None:
        pass


def unqueued(db: Database) -> Transactions:
    """Units of work that publish to nobody and queue nothing."""
    return Transactions(db, LocalBus(), _Nowhere())


@asynccontextmanager
async def scratch_database(kind: Kind, *, durable: bool = True) -> AsyncIterator[tuple[str, Path]]:
    """A migrated, empty database: its URL, and a data directory to go with it.

    `durable=False` sets `synchronous_commit = off` on the PostgreSQL database (this one only): a commit
    then does not wait for its WAL flush, as SQLite in WAL mode with `synchronous=NORMAL` does not either.
    On this machine's disk one flush takes about 12 ms, and one batch's transactions queue on its row lock,
    so a benchmark of the pipeline's own cost would otherwise time the disk."""
    with tempfile.TemporaryDirectory(prefix="lbbench-") as tmp:
        data_dir = Path(tmp)
        if kind == "sqlite":
            url = f"sqlite+aiosqlite:///{data_dir / 'livebatch.db'}"
            await upgrade_async(url)
            yield url, data_dir
            return
        name = f"lbbench_{uuid.uuid4().hex[:12]}"
        await _admin(f"CREATE DATABASE {name}")
        try:
            if not durable:
                await _admin(f"ALTER DATABASE {name} SET synchronous_commit = off")
            url = f"{PG_URL.rpartition('/')[0]}/{name}"
            await upgrade_async(url)
            yield url, data_dir
        finally:
            await _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def settings_for(url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a benchmark on this database: embedded queue and bus, zero-latency offline provider."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": url,
        "redis_url": None,
        "jwt_secret": JWT_SECRET,
        "offline_latency_ms": 0,
        "offline_failure_rate": 0.0,
        "max_items_per_day": 10**9,  # a benchmark writes more than a user's daily quota in one run
        "log_format": "text",
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


def env_of(settings: Settings) -> dict[str, str]:
    """The settings as `LIVEBATCH_*` variables, for a `livebatch` subprocess."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"LIVEBATCH_{name.upper()}"] = str(value)
    return env


async def seed(db: Database) -> User:
    """The demo courses and one faculty member, who owns the benchmarks' batches."""
    async with db.session() as session:
        await seed_demo_courses(session)
        user = await ensure_user(session, "bench@uni.example", Role.faculty)
        await session.commit()
    return user


def spec(count: int) -> BatchCreate:
    return BatchCreate(
        course_id=COURSE,
        target_count=count,
        difficulty_distribution=DifficultyDistribution(easy=30, medium=50, hard=20),
    )


async def bulk_batch(db: Database, owner: User, count: int, *, done: int, status: str = "running") -> Batch:
    """A batch of `count` items, `done` of them completed, made by the database itself in one statement
    (INSERT ... SELECT over a generated series): fast for 100 000 items, and a snapshot does not care how."""
    async with unqueued(db).begin() as uow:
        session = uow.session
        batch = await service.create_batch(
            uow, spec(1), owner=owner, limits=Limits(max_items_per_day=10**9), now=utcnow()
        )
        await session.execute(delete(Item).where(Item.batch_id == batch.id))
        numbers = select(literal(0).label("n")).cte("numbers", recursive=True)
        numbers = numbers.union_all(select(numbers.c.n + 1).where(numbers.c.n < count - 1))
        postgres = db.engine.dialect.name == "postgresql"
        random_id = func.gen_random_uuid() if postgres else func.lower(func.hex(func.randomblob(16)))
        rows = select(
            random_id,
            literal(batch.id, Item.batch_id.type),
            numbers.c.n,
            literal("medium"),
            case((numbers.c.n < done, "completed"), else_="pending"),
            case((numbers.c.n < done, 1), else_=0),
            literal(utcnow(), Item.next_attempt_at.type),
            literal(False),
        )
        columns = ["id", "batch_id", "idx", "difficulty", "status", "attempts", "next_attempt_at", "will_retry"]
        await session.execute(insert(Item).from_select(columns, rows))
        await session.execute(
            update(Batch)
            .where(Batch.id == batch.id)
            .values(status=status, total_items=count, completed_items=done, in_progress_items=0)
        )
        await session.commit()
    return batch
