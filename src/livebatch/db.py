"""Engines, sessions and the declarative base, for SQLite (embedded) and PostgreSQL (scaled out).

SQLite needs care with several async writers: the driver must not open transactions by itself, and
every writing transaction starts with `BEGIN IMMEDIATE` so that a read-then-write never loses an update
(docs/stack-notes.md: 3-4 % lost increments otherwise). Readers use a second engine that begins deferred,
so streams and GETs never wait for the write lock.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, Dialect, MetaData, event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import await_

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[int]: JSON()}


BUSY_TIMEOUT_S = 30


def prepare_sqlite(engine: AsyncEngine, *, foreign_keys: bool = True, turns: WriteTurns | None = None) -> None:
    """`foreign_keys` is off only for migrations: recreating a table with it on cascades deletes. `turns`:
    this process's writers take SQLite's write lock in turn (`WriteTurns`)."""
    pragmas = (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        f"foreign_keys={'ON' if foreign_keys else 'OFF'}",
        f"busy_timeout={BUSY_TIMEOUT_S * 1000}",
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver must not BEGIN by itself
        for pragma in pragmas:
            dbapi_conn.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("sqlite_readonly"):
            conn.exec_driver_sql("BEGIN")
            return
        if turns is not None and not conn.info.get(_TURN):
            await_(turns.take(BUSY_TIMEOUT_S))  # this runs in SQLAlchemy's greenlet, on the session's loop
            conn.info[_TURN] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _give_back(conn.info, turns)
            raise

    if turns is None:
        return

    # The turn goes on as the transaction ends, however it ends: commit, rollback, or the connection
    # returned to the pool, invalidated or closed with it open.
    @event.listens_for(engine.sync_engine, "commit")
    @event.listens_for(engine.sync_engine, "rollback")
    def _on_end(conn: Any) -> None:
        if not conn.invalidated:  # an invalidated one gave its turn back as the pool let it go (below)
            _give_back(conn.info, turns)

    @event.listens_for(engine.sync_engine, "reset")
    def _on_reset(dbapi_connection: Any, connection_record: Any, reset_state: Any) -> None:
        _give_back(connection_record.info, turns)

    @event.listens_for(engine.sync_engine, "invalidate")
    @event.listens_for(engine.sync_engine, "soft_invalidate")
    def _on_invalidate(dbapi_connection: Any, connection_record: Any, exception: Any) -> None:
        _give_back(connection_record.info, turns)

    @event.listens_for(engine.sync_engine, "close")
    def _on_close(dbapi_connection: Any, connection_record: Any) -> None:
        _give_back(connection_record.info, turns)


_TURN = "livebatch_write_turn"


def _give_back(info: dict[str, Any], turns: WriteTurns | None) -> None:
    if turns is not None and info.pop(_TURN, False):
        turns.give()


class WriteTurns:
    """SQLite's write lock, taken in turn by this process's writing transactions: first come, first served.

    A writer that finds the lock taken is left by SQLite to poll for it, sleeping longer between tries (up to
    100 ms), and a writer that commits and begins again at once wins over it every time: on the embedded
    default, a faculty member's Pause waited behind the worker's item changes (which run on a thread of
    their own, uow.py), once 1.5 s in 12 tries. Here each writing transaction of the process waits for its
    turn before `BEGIN IMMEDIATE`, in the order they asked, whichever event loop they run on, and hands it
    on as it ends. Another process on the same file (a CLI command) still meets SQLite's own wait."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._taken = False
        self._queue: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    async def take(self, timeout: float) -> None:
        """Until it is this caller's turn (TimeoutError after `timeout`, as SQLite's busy timeout would)."""
        loop = asyncio.get_running_loop()
        with self._mutex:
            if not self._taken:
                self._taken = True
                return
            turn: asyncio.Future[None] = loop.create_future()
            self._queue.append((loop, turn))
        try:
            async with asyncio.timeout(timeout):
                await turn
        except BaseException:
            with self._mutex:
                queued = (loop, turn) in self._queue
                if queued:
                    self._queue.remove((loop, turn))
            if not queued and turn.done() and not turn.cancelled():
                self.give()  # handed over just as the wait ended: on to the next
            raise

    def give(self) -> None:
        """The caller's turn is over: to the next in line (on its own loop), or free."""
        with self._mutex:
            if not self._queue:
                self._taken = False
                return
            loop, turn = self._queue.popleft()
        loop.call_soon_threadsafe(self._hand, turn)

    def _hand(self, turn: asyncio.Future[None]) -> None:
        if turn.cancelled():  # it stopped waiting meanwhile
            self.give()
        else:
            turn.set_result(None)


_turns: dict[str, WriteTurns] = {}
_turns_mutex = threading.Lock()


def write_turns(path: Path) -> WriteTurns:
    """The one `WriteTurns` of this process for a database file, whatever engine writes to it."""
    key = os.path.realpath(path)
    with _turns_mutex:
        return _turns.setdefault(key, WriteTurns())


class DatabaseReadOnly(Exception):
    """The database takes no writes now (read-only files, a read-only PostgreSQL)."""


READ_ONLY_SQLSTATE = "25006"  # PostgreSQL's read_only_sql_transaction: a standby, or a read-only default


def is_read_only_error(exc: BaseException | None) -> bool:
    """SQLite's SQLITE_READONLY ("attempt to write a readonly database") or PostgreSQL's 25006."""
    if exc is None:
        return False
    if getattr(exc, "sqlstate", None) == READ_ONLY_SQLSTATE or getattr(exc, "pgcode", None) == READ_ONLY_SQLSTATE:
        return True
    return "readonly database" in str(exc) or "read-only transaction" in str(exc)


def sqlite_path(engine: AsyncEngine) -> Path | None:
    database = engine.url.database
    return Path(database) if database and database != ":memory:" and not database.startswith("file:") else None


def _sqlite_files_writable(path: Path) -> bool:
    files = [path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")]
    return all(os.access(f, os.W_OK) for f in files if f.exists())


def recycle_read_only_connections(engine: AsyncEngine) -> None:
    """A connection that failed a write because the database was read-only is thrown away, with the rest of
    the pool (SQLAlchemy's handling of a disconnect), so that writes work again once the database does.

    On SQLite that is not enough: a connection opened while the file was read-only stays read-only for good,
    even after the file is writable again. Such a connection is marked when it is opened, and replaced when
    it is next taken from the pool once the file is writable."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: Any) -> None:
        if is_read_only_error(context.original_exception):
            context.is_disconnect = True

    path = sqlite_path(engine)
    if path is None:
        return

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(_dbapi_conn: Any, record: Any) -> None:
        record.info["opened_read_only"] = not _sqlite_files_writable(path)

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if record.info.get("opened_read_only") and _sqlite_files_writable(path):
            raise DisconnectionError("opened while the database was read-only")  # the pool opens another


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20) -> AsyncEngine:
    if url.startswith("sqlite"):
        connect = {"timeout": BUSY_TIMEOUT_S}
        engine = create_async_engine(url, connect_args=connect, pool_size=pool_size, max_overflow=max_overflow)
        path = sqlite_path(engine)
        prepare_sqlite(engine, turns=write_turns(path) if path is not None else None)
    else:
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)
    recycle_read_only_connections(engine)
    return engine


class Database:
    """The writing engine and its read-only twin (the same engine off SQLite)."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 20) -> None:
        self.url = url
        self.engine = create_engine(url, pool_size=pool_size, max_overflow=max_overflow)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        read_engine = self.engine.execution_options(sqlite_readonly=True) if self.is_sqlite else self.engine
        self.session = async_sessionmaker(self.engine, expire_on_commit=False)
        self.read_session = async_sessionmaker(read_engine, expire_on_commit=False)

    async def check_writable(self) -> None:
        """Raises unless a write transaction can begin now (`/readyz`): the SQLite files writable and the
        write lock taken (BEGIN IMMEDIATE); PostgreSQL not read-only."""
        path = sqlite_path(self.engine) if self.is_sqlite else None
        if path is not None and not _sqlite_files_writable(path):
            raise DatabaseReadOnly(f"{path.name} is read-only")
        async with self.session() as session:
            if self.is_sqlite:
                await session.execute(text("SELECT 1"))
                return
            try:
                # Writes nothing, but PostgreSQL refuses it in a read-only transaction (25006) as it would a
                # real write: the error recycles the pool (recycle_read_only_connections) as a write's would.
                await session.execute(text("UPDATE alembic_version SET version_num = version_num WHERE false"))
            except DBAPIError as exc:
                if is_read_only_error(exc.orig):
                    raise DatabaseReadOnly("the database is read-only") from None
                raise

    async def dispose(self) -> None:
        await self.engine.dispose()
