"""Alembic environment: one set of revisions for SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

import livebatch.batches.models
import livebatch.courses.models
import livebatch.events.log
import livebatch.users.models
import livebatch.webhooks.models  # noqa: F401  (the models register their tables on Base.metadata)
from livebatch.db import Base, prepare_sqlite

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    if engine.dialect.name == "sqlite":
        # BEGIN IMMEDIATE so that a failed migration is rolled back whole; foreign keys off, or
        # recreating batch_jobs would cascade-delete every item and event.
        prepare_sqlite(engine, foreign_keys=False)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


url = context.config.attributes.get("database_url") or context.config.get_main_option("sqlalchemy.url")
if context.is_offline_mode():
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online(str(url)))
