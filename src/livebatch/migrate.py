"""Schema migrations (Alembic), with the URL from settings rather than alembic.ini (a `%` breaks it)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


async def upgrade_async(url: str) -> None:
    # Alembic's env runs its own event loop; inside a running one it must run in a thread.
    await asyncio.to_thread(upgrade, url)


def _ensure_sqlite_dir(url: str) -> None:
    """The database file holds the answer keys: a new one, and a new directory for it, are the owner's
    alone (0600, 0700). SQLite gives its -wal and -shm files the database file's mode."""
    path = url.split(":///", 1)[-1].split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    database = Path(path)
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # an empty file is a new database
    except FileExistsError:
        pass
