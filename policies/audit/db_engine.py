"""Database engines for the audit store.

Write transactions serialise the hash chain across processes: on SQLite they start with
``BEGIN IMMEDIATE`` (the database's single write lock, waited for up to the busy
timeout); on PostgreSQL they take a transaction-scoped advisory lock before reading the
chain head. Read transactions never block writers (WAL on SQLite, MVCC on PostgreSQL).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from policies.errors import ConfigError

CONNECT_TIMEOUT_S = 5.0
STATEMENT_TIMEOUT_S = 30.0
SQLITE_BUSY_TIMEOUT_MS = 15_000
# Any constant works as long as every ExecGate process uses the same one.
CHAIN_LOCK_KEY = int.from_bytes(b"ExecGate", "big")

WRITE_OPTION = "execgate_write"
# A connection whose transactions are begun on the driver (BEGIN IMMEDIATE that must not
# wait): SQLAlchemy emits no BEGIN for it.
INLINE_OPTION = "execgate_inline"
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
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError("the audit database must be a file: sqlite+aiosqlite:///PATH")
    return parsed.set(drivername=_DRIVERS[backend])


def postgres_connect_args() -> dict[str, Any]:
    return {"timeout": CONNECT_TIMEOUT_S, "command_timeout": STATEMENT_TIMEOUT_S}


def sqlite_connect_args() -> dict[str, Any]:
    return {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url`` (migrations use it) with timeouts, and on SQLite
    WAL, foreign keys and ExecGate's BEGIN handling.

    Raises: ConfigError for an unsupported URL.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(parsed, connect_args=sqlite_connect_args())
        install_sqlite_hooks(engine.sync_engine)
        return engine
    return create_async_engine(
        parsed, connect_args=postgres_connect_args(), pool_timeout=CONNECT_TIMEOUT_S
    )


def install_sqlite_hooks(engine: Engine) -> None:
    """WAL, busy timeout and foreign keys on every connection; BEGIN emitted by
    SQLAlchemy, IMMEDIATE for connections carrying ``WRITE_OPTION``."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's legacy mode would skip BEGIN before SELECTs and cannot say
        # IMMEDIATE; SQLAlchemy emits it instead (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            # With WAL, NORMAL survives a process crash; only a power loss can cost the
            # last commits, which the checkpoint file then reports as truncation.
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(INLINE_OPTION, False):
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE_OPTION, False) else "BEGIN")
