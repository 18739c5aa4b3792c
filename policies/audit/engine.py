"""Database engines for the audit store and the two kinds of transaction it uses.

Write transactions serialise the hash chain across processes: on SQLite they start with
``BEGIN IMMEDIATE`` (the database's single write lock, waited for up to the busy
timeout); on PostgreSQL they take a transaction-scoped advisory lock before reading the
chain head. Read transactions never block writers (WAL on SQLite, MVCC on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from policies.errors import ConfigError

CONNECT_TIMEOUT_S = 5.0
STATEMENT_TIMEOUT_S = 30.0
SQLITE_BUSY_TIMEOUT_MS = 15_000
# Any constant works as long as every ExecGate process uses the same one.
CHAIN_LOCK_KEY = int.from_bytes(b"ExecGate", "big")

_WRITE = "execgate_write"
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def parse_url(url: str) -> URL:
    """The database URL with ExecGate's async driver for its backend.

    Raises: ConfigError when the URL is malformed or names an unsupported database.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError("the audit database URL is malformed") from exc
    backend = parsed.get_backend_name()
    if backend not in _DRIVERS:
        raise ConfigError(
            "the audit database must be sqlite+aiosqlite:///PATH or postgresql+asyncpg://..."
        )
    return parsed.set(drivername=_DRIVERS[backend])


def create_engine(url: str) -> AsyncEngine:
    """An engine for ``url`` with timeouts, and on SQLite WAL, foreign keys and
    ExecGate's own BEGIN handling.

    Raises: ConfigError for an unsupported URL.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(
            parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        _install_sqlite_hooks(engine)
        return engine
    return create_async_engine(
        parsed,
        connect_args={"timeout": CONNECT_TIMEOUT_S, "command_timeout": STATEMENT_TIMEOUT_S},
        pool_timeout=CONNECT_TIMEOUT_S,
    )


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (the driver's legacy mode would skip it for
        # SELECTs and could not say IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            # With WAL, NORMAL survives a process crash; it only risks the last commits
            # on power loss, which the checkpoint file then reports as truncation.
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


@asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction holding the chain's write lock; commits on normal exit."""
    async with engine.connect() as conn:
        if is_sqlite(engine):
            await conn.execution_options(**{_WRITE: True})
        async with conn.begin():
            if not is_sqlite(engine):
                await conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY}
                )
            yield conn


@asynccontextmanager
async def read_transaction(
    engine: AsyncEngine, *, snapshot: bool = False
) -> AsyncIterator[AsyncConnection]:
    """A read-only transaction; ``snapshot`` makes every statement see the same state
    (SQLite read transactions always do)."""
    async with engine.connect() as conn:
        if snapshot and not is_sqlite(engine):
            await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            yield conn
