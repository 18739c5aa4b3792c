"""Where transactions run: the one place that knows SQLite from PostgreSQL.

Store operations are written once, as plain functions of a SQLAlchemy ``Connection``,
and a backend runs each one as a whole transaction:

- SQLite: in a worker thread on the standard ``sqlite3`` driver. aiosqlite hops to its
  thread for every cursor call (several per statement), which caps an audited exec at
  a few milliseconds; one hop per transaction keeps hundreds of execs a second. Writes
  share one thread, so they queue in order in this process, and take ``BEGIN
  IMMEDIATE`` so other processes wait for them.
- PostgreSQL: on asyncpg through SQLAlchemy's asyncio layer (``run_sync``), writes
  holding a transaction-scoped advisory lock.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import create_async_engine

from policies.audit.engine import (
    CHAIN_LOCK_KEY,
    CONNECT_TIMEOUT_S,
    WRITE_OPTION,
    install_sqlite_hooks,
    parse_url,
    postgres_connect_args,
    sqlite_connect_args,
)

T = TypeVar("T")
_READERS = 4


class Backend(Protocol):
    async def read(self, body: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        """Run ``body`` in a read transaction (``snapshot``: one consistent view)."""
        ...

    async def write(self, body: Callable[[Connection], T]) -> T:
        """Run ``body`` in a transaction holding the chain's write lock; commit when
        it returns, roll back when it raises."""
        ...

    async def dispose(self) -> None: ...


class SqliteBackend:
    def __init__(self, url: URL) -> None:
        self._engine = sa.create_engine(
            url.set(drivername="sqlite+pysqlite"),
            connect_args={**sqlite_connect_args(), "check_same_thread": False},
            poolclass=sa.pool.QueuePool,
            pool_size=_READERS + 1,
            max_overflow=0,
        )
        install_sqlite_hooks(self._engine)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="execgate-audit-write")
        self._readers = ThreadPoolExecutor(_READERS, thread_name_prefix="execgate-audit-read")

    def _run(self, body: Callable[[Connection], T], write: bool) -> T:
        with self._engine.connect() as conn:
            if write:
                conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                return body(conn)

    async def read(self, body: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        # A SQLite read transaction always sees one snapshot.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, functools.partial(self._run, body, False))

    async def write(self, body: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, functools.partial(self._run, body, True))

    async def dispose(self) -> None:
        def close() -> None:
            self._writer.shutdown(wait=True)
            self._readers.shutdown(wait=True)
            self._engine.dispose()

        await asyncio.to_thread(close)


class PostgresBackend:
    def __init__(self, url: URL) -> None:
        self._engine = create_async_engine(
            url, connect_args=postgres_connect_args(), pool_timeout=CONNECT_TIMEOUT_S
        )

    async def read(self, body: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        async with self._engine.connect() as conn:
            if snapshot:
                await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                return await conn.run_sync(body)

    async def write(self, body: Callable[[Connection], T]) -> T:
        async with self._engine.connect() as conn, conn.begin():
            await conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY}
            )
            return await conn.run_sync(body)

    async def dispose(self) -> None:
        await self._engine.dispose()


def open_backend(url: str) -> Backend:
    """A backend for ``url`` (no connection is made yet).

    Raises: ConfigError for an unsupported URL.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return SqliteBackend(parsed)
    return PostgresBackend(parsed)
