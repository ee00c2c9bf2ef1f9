"""`livebatch migrate` on a fresh database: SQLite under `pytest`, PostgreSQL under `--backend=scaled`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    DateTime,
    Integer,
    String,
    Uuid,
    column,
    insert,
    inspect,
    select,
    table,
    text,
)

from livebatch import migrate
from livebatch.db import Base, Database
from livebatch.migrate import alembic_config, downgrade, upgrade_async
from tests.cli.conftest import RunCli
from tests.conftest import Backend

TABLES = {"users", "courses", "sign_in_links", "batch_jobs", "batch_items", "batch_events", "generated_items"}
WEBHOOK_TABLES = {"webhooks", "webhook_deliveries"}
WEBHOOK_REVISION = "0004_failures_and_webhooks"
IDENTITY_REVISION = "0007_identity"
ANSWER_REVISION = "0009_answer_index"


def _postgres(admin_url: str, statement: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture
def fresh(backend: Backend, tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    """Environment variables naming a database that has never been migrated, and its URL. On SQLite
    only the data directory is given (it does not exist yet): the default database lives there."""
    if not backend.scaled:
        data_dir = tmp_path / "brand-new"
        yield {"LIVEBATCH_DATA_DIR": str(data_dir)}, f"sqlite+aiosqlite:///{data_dir / 'livebatch.db'}"
        return
    name = f"lbt_fresh_{uuid4().hex[:12]}"
    _postgres(backend.pg_admin_url, f"CREATE DATABASE {name} TEMPLATE template0")
    url = f"{backend.pg_admin_url.rpartition('/')[0]}/{name}"
    yield {"LIVEBATCH_DATABASE_URL": url}, url
    _postgres(backend.pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _schema(connection: Connection) -> tuple[set[str], str | None, list[Any]]:
    tables = set(inspect(connection).get_table_names())
    version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
    drift = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    return tables, version, drift


async def test_migrate_builds_the_whole_schema_on_a_fresh_database_and_is_idempotent(
    run_cli: RunCli, env_for: Callable[..., dict[str, str]], fresh: tuple[dict[str, str], str]
) -> None:
    variables, url = fresh
    env = {k: v for k, v in env_for().items() if k not in ("LIVEBATCH_DATABASE_URL", "LIVEBATCH_DATA_DIR")}
    env.update(variables)
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()

    run = run_cli("migrate", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().splitlines()[-1] == "schema is up to date"
    for again in (False, True):
        if again:  # a second run finds nothing to do (what the command calls, in this process)
            await upgrade_async(url)
        db = Database(url)
        try:
            async with db.engine.connect() as connection:
                tables, version, drift = await connection.run_sync(_schema)
        finally:
            await db.dispose()
        assert TABLES | WEBHOOK_TABLES <= tables
        assert version == head
        assert drift == [], "the migrations and the models disagree"


USAGE_BATCH_COLUMNS = {
    "prompt_tokens",
    "completion_tokens",
    "cost_nanos",
    "unpriced_attempts",
    "currency",
    "pause_reason",
    "recent_outcomes",
    "pruned_through",
}
USAGE_ITEM_COLUMNS = {"prompt_tokens", "completion_tokens", "cost_nanos", "unpriced_attempts", "usage_attempt"}
# The tables as revision 0002 has them, only the columns a row needs: the models are at head.
_USERS = table(
    "users",
    column("id", Uuid()),
    column("email", String()),
    column("role", String()),
    column("created_at", DateTime(timezone=True)),
)
_COURSES = table(
    "courses", column("id", String()), column("title", String()), column("created_at", DateTime(timezone=True))
)
_BATCHES = table(
    "batch_jobs",
    *(column(name, Uuid()) for name in ("id", "owner_id")),
    *(column(name, String()) for name in ("course_id", "status")),
    column("config", JSON()),
    *(column(name, Integer()) for name in ("concurrency", "item_prior_ms", "total_items", "completed_items")),
    *(column(name, Integer()) for name in ("failed_items", "in_progress_items", "cancelled_items", "last_seq")),
    column("active_ms", Integer()),
    column("completion_window", JSON()),
    column("created_at", DateTime(timezone=True)),
)
_GENERATED = table(
    "generated_items",
    *(column(name, Uuid()) for name in ("id", "item_id", "batch_id")),
    column("idx", Integer()),
    column("content", JSON()),
    column("created_at", DateTime(timezone=True)),
)
_ITEMS = table(
    "batch_items",
    *(column(name, Uuid()) for name in ("id", "batch_id")),
    column("idx", Integer()),
    *(column(name, String()) for name in ("difficulty", "status")),
    column("attempts", Integer()),
    column("next_attempt_at", DateTime(timezone=True)),
    column("will_retry", Boolean()),
)


def _rows_before_0003(connection: Connection) -> None:
    now = datetime.now(UTC)
    owner, batch = uuid4(), uuid4()
    connection.execute(insert(_USERS).values(id=owner, email="ada@uni.example", role="faculty", created_at=now))
    connection.execute(insert(_COURSES).values(id="c1", title="Cardiovascular Pathology", created_at=now))
    counts = dict.fromkeys(("completed_items", "failed_items", "in_progress_items", "cancelled_items"), 0)
    connection.execute(
        insert(_BATCHES).values(
            id=batch,
            owner_id=owner,
            course_id="c1",
            status="paused",
            config={"courseId": "c1", "targetCount": 1},
            concurrency=1,
            item_prior_ms=30_000,
            total_items=1,
            last_seq=0,
            active_ms=0,
            completion_window=[0],
            created_at=now,
            **counts,
        )
    )
    connection.execute(
        insert(_ITEMS).values(
            id=uuid4(),
            batch_id=batch,
            idx=0,
            difficulty="easy",
            status="pending",
            attempts=0,
            next_attempt_at=now,
            will_retry=False,
        )
    )


def _columns(connection: Connection, name: str) -> set[str]:
    return {c["name"] for c in inspect(connection).get_columns(name)}


def _counts(connection: Connection) -> tuple[int, int]:
    one = connection.execute(text("SELECT count(*) FROM batch_jobs")).scalar_one()
    return one, connection.execute(text("SELECT count(*) FROM batch_items")).scalar_one()


async def test_0003_upgrades_rows_made_before_it_and_downgrades_without_losing_them(
    fresh: tuple[dict[str, str], str],
) -> None:
    """Upgrade and downgrade of `0003_usage_and_guards` on this backend's database (SQLite: batch mode,
    foreign keys off, so recreating a table deletes nothing)."""
    _, url = fresh
    await asyncio.to_thread(migrate.upgrade, url, "0002")
    db = Database(url)
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(_rows_before_0003)
        await asyncio.to_thread(migrate.upgrade, url, "0003_usage_and_guards")
        async with db.engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT prompt_tokens, completion_tokens, cost_nanos, unpriced_attempts, currency, "
                        "pause_reason, recent_outcomes, pruned_through FROM batch_jobs"
                    )
                )
            ).one()
            item = (await connection.execute(text("SELECT cost_nanos, usage_attempt FROM batch_items"))).one()
        # A batch paused before the guards existed was paused by hand; it has used nothing recorded.
        assert tuple(row) == (0, 0, 0, 0, "USD", "user", "", 0)
        assert tuple(item) == (0, 0)

        await asyncio.to_thread(migrate.downgrade, url, "0002")
        async with db.engine.connect() as connection:
            assert not USAGE_BATCH_COLUMNS & await connection.run_sync(_columns, "batch_jobs")
            assert not USAGE_ITEM_COLUMNS & await connection.run_sync(_columns, "batch_items")
            assert await connection.run_sync(_counts) == (1, 1), "the downgrade lost no row"
        await asyncio.to_thread(migrate.upgrade, url, "head")
        async with db.engine.connect() as connection:
            assert USAGE_BATCH_COLUMNS <= await connection.run_sync(_columns, "batch_jobs")
            assert await connection.run_sync(_counts) == (1, 1)
            drift = await connection.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
        assert drift == [], "up again to the head, the tables are the models'"
    finally:
        await db.dispose()


async def test_0005_goes_down_and_up_again_and_counts_the_items_waiting_for_a_retry(
    fresh: tuple[dict[str, str], str],
) -> None:
    """The revision of issue 20, both ways on this backend's database: down drops its columns, up adds them
    again and counts each batch's items that wait for another attempt."""
    from livebatch.batches import service
    from livebatch.batches.models import Item
    from livebatch.courses.service import seed_demo_courses
    from livebatch.migrate import downgrade
    from livebatch.users.models import Role
    from livebatch.users.service import ensure_user
    from tests.batches.conftest import spec
    from tests.checks import Unqueued, load_batch

    _, url = fresh
    await upgrade_async(url)
    db = Database(url)
    try:
        async with Unqueued(db).begin() as uow:
            await seed_demo_courses(uow.session)
            owner = await ensure_user(uow.session, "ada@uni.example", Role.faculty)
            batch = await service.create_batch(uow, spec(3), owner=owner, limits=service.Limits(), now=owner.created_at)
            await uow.commit()
        async with db.session() as session:  # an item back to pending after a failed attempt, as a worker leaves it
            item = (await session.execute(select(Item).where(Item.batch_id == batch.id, Item.idx == 1))).scalar_one()
            item.attempts, item.will_retry = 1, True
            await session.commit()

        await asyncio.to_thread(downgrade, url, "0003_usage_and_guards")
        async with db.engine.connect() as connection:
            columns = await connection.run_sync(lambda c: {x["name"] for x in inspect(c).get_columns("batch_items")})
        assert "requeues" not in columns
        await upgrade_async(url)
        reloaded = await load_batch(db, batch.id)
        assert (reloaded.retrying_items, reloaded.pending_items) == (1, 3)
    finally:
        await db.dispose()


async def test_the_webhook_revision_goes_down_and_up_again_keeping_every_other_row(
    fresh: tuple[dict[str, str], str],
) -> None:
    _, url = fresh
    script = ScriptDirectory.from_config(alembic_config(url))
    head, parent = script.get_current_head(), script.get_revision(WEBHOOK_REVISION).down_revision
    assert isinstance(parent, str)
    await upgrade_async(url)
    db = Database(url)
    try:
        async with db.engine.begin() as connection:
            user_id, at = uuid4(), datetime.now(UTC)
            users = Base.metadata.tables["users"]
            await connection.execute(
                insert(users).values(id=user_id, email="ada@uni.example", role="faculty", created_at=at)
            )
            webhook = {"user_id": user_id, "url": "https://example.org/hook", "secret": "whsec_x"}
            await connection.execute(
                insert(Base.metadata.tables["webhooks"]).values(**webhook, created_at=at, updated_at=at)
            )
        await asyncio.to_thread(downgrade, url, parent)
        async with db.engine.connect() as connection:
            tables, version, _ = await connection.run_sync(_schema)
            users = (await connection.execute(text("SELECT count(*) FROM users"))).scalar_one()
        assert (version, users) == (parent, 1)
        assert TABLES <= tables and not WEBHOOK_TABLES & tables
        await upgrade_async(url)
        async with db.engine.connect() as connection:
            tables, version, drift = await connection.run_sync(_schema)
        assert WEBHOOK_TABLES <= tables and version == head and drift == []
    finally:
        await db.dispose()


async def test_the_hardening_revision_goes_down_and_up_again_keeping_users_and_items(
    fresh: tuple[dict[str, str], str],
) -> None:
    """The revision of issue 19, both ways on this backend's database: down drops `users.token_version` and
    `batch_items.lease_owner` and keeps every row; up adds them again, every user at version 0, so that the
    tokens minted before it (which carry no version) stay valid."""
    from livebatch.batches import service
    from livebatch.courses.service import seed_demo_courses
    from livebatch.users.models import Role, User
    from livebatch.users.service import ensure_user
    from tests.batches.conftest import spec
    from tests.checks import Unqueued

    _, url = fresh
    script = ScriptDirectory.from_config(alembic_config(url))
    revision = script.get_revision("0008_hardening")
    assert revision.down_revision == IDENTITY_REVISION
    await upgrade_async(url)
    db = Database(url)
    try:
        async with Unqueued(db).begin() as uow:
            await seed_demo_courses(uow.session)
            owner = await ensure_user(uow.session, "ada@uni.example", Role.faculty)
            owner.token_version = 3
            await service.create_batch(uow, spec(3), owner=owner, limits=service.Limits(), now=owner.created_at)
            await uow.commit()

        await asyncio.to_thread(downgrade, url, IDENTITY_REVISION)
        async with db.engine.connect() as connection:
            users = await connection.run_sync(lambda c: {x["name"] for x in inspect(c).get_columns("users")})
            items = await connection.run_sync(lambda c: {x["name"] for x in inspect(c).get_columns("batch_items")})
            counts = [
                (await connection.execute(text(f"SELECT count(*) FROM {name}"))).scalar_one()
                for name in ("users", "batch_jobs", "batch_items")
            ]
        assert "token_version" not in users and "lease_owner" not in items
        assert counts == [1, 1, 3]

        await upgrade_async(url)
        async with db.engine.connect() as connection:
            _, version, drift = await connection.run_sync(_schema)
            assert version == script.get_current_head() and drift == []
            rows = (await connection.execute(select(User.token_version))).scalars().all()
        assert rows == [0]
    finally:
        await db.dispose()


async def test_the_answer_revision_fills_the_key_of_items_generated_before_it_and_goes_down_and_up_again(
    fresh: tuple[dict[str, str], str],
) -> None:
    """The revision that keeps each generated item's key letter beside its content (`0009_answer_index`),
    both ways on this backend's database: up fills it from the content of the items generated before it, so
    that the batch's answer keys count them; down drops it and keeps every row."""
    from livebatch.batches import reads, service
    from livebatch.batches.models import Batch, Item
    from livebatch.courses.service import seed_demo_courses
    from livebatch.users.models import Role
    from livebatch.users.service import ensure_user
    from tests.batches.conftest import spec
    from tests.checks import Unqueued

    _, url = fresh
    script = ScriptDirectory.from_config(alembic_config(url))
    assert script.get_revision(ANSWER_REVISION).down_revision == "0008_hardening"
    await upgrade_async(url)
    db = Database(url)
    try:
        async with Unqueued(db).begin() as uow:
            await seed_demo_courses(uow.session)
            owner = await ensure_user(uow.session, "ada@uni.example", Role.faculty)
            batch = await service.create_batch(uow, spec(3), owner=owner, limits=service.Limits(), now=owner.created_at)
            await uow.commit()
        async with db.session() as session:
            items = (await session.execute(select(Item.id, Item.idx).where(Item.batch_id == batch.id))).all()

        await asyncio.to_thread(downgrade, url, "0008_hardening")
        keyed = ["B", "B", "D"]
        async with db.engine.begin() as connection:
            assert "answer" not in await connection.run_sync(_columns, "generated_items")
            for (item_id, idx), letter in zip(sorted(items, key=lambda row: row[1]), keyed, strict=True):
                await connection.execute(
                    insert(_GENERATED).values(
                        id=uuid4(),
                        item_id=item_id,
                        batch_id=batch.id,
                        idx=idx,
                        content={"answer": letter},
                        created_at=datetime.now(UTC),
                    )
                )

        await upgrade_async(url)
        async with db.engine.connect() as connection:
            _, version, drift = await connection.run_sync(_schema)
        assert version == script.get_current_head() and drift == []
        async with db.session() as session:
            row = await session.get(Batch, batch.id)
            assert row is not None
            assert await reads.answer_keys_of(session, row) == {"A": 0, "B": 2, "C": 0, "D": 1, "E": 0}

        await asyncio.to_thread(downgrade, url, "0008_hardening")
        async with db.engine.connect() as connection:
            assert "answer" not in await connection.run_sync(_columns, "generated_items")
            count = (await connection.execute(text("SELECT count(*) FROM generated_items"))).scalar_one()
        assert count == len(keyed)
    finally:
        await db.dispose()
