"""Where transactions run: the one place that knows SQLite from PostgreSQL.

Store operations are written once, as plain functions of a SQLAlchemy ``Connection``,
and a backend runs each one as a whole transaction:

- SQLite: on the standard ``sqlite3`` driver. A write the database can take at once
  runs on the calling (event loop) thread: a WAL commit without fsync costs a fraction
  of a millisecond, less than handing the transaction to a thread and back, and a
  thread holding the interpreter lock while the loop wakes delays every exec. A write
  that would wait (another process holds the write lock) goes to a worker thread, as do
  reads; writes there share one thread, queue in order, and take ``BEGIN IMMEDIATE``
  so other processes wait for them. The loop's connection never waits for the lock and
  never checkpoints the WAL (that syncs the disk); the worker thread checkpoints.
- PostgreSQL: on asyncpg through SQLAlchemy's asyncio layer (``run_sync``), writes
  holding a transaction-scoped advisory lock; an exec's writes as single statements
  (``policies.audit.single``), and groups of them as one transaction, on asyncpg
  connections kept for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import create_async_engine

from policies.audit.db_engine import (
    CHAIN_LOCK_KEY,
    CONNECT_TIMEOUT_S,
    INLINE_OPTION,
    WRITE_OPTION,
    install_sqlite_hooks,
    parse_url,
    postgres_connect_args,
    sqlite_connect_args,
)
from policies.audit.prepared import driver

T = TypeVar("T")
logger = logging.getLogger("policies.audit")
_READERS = 4
# The loop's connection leaves WAL checkpoints (which sync the disk) to the writer
# thread, which runs a passive one after this many inline commits.
_CHECKPOINT_EVERY = 500
_CLOSE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


# Statements with their parameters; what a batch runs once it read its first rows.
Statements = Sequence[tuple[str, Sequence[Any]]]
Then = Callable[[Sequence[Any] | None], Statements]


class Busy(enum.Enum):
    """``write_now`` could not take the write lock without waiting."""

    BUSY = "busy"


BUSY = Busy.BUSY


class Backend(Protocol):
    async def read(self, body: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        """Run ``body`` in a read transaction (``snapshot``: one consistent view)."""
        ...

    async def write(self, body: Callable[[Connection], T], *, durable: bool = True) -> T:
        """Run ``body`` in a transaction holding the chain's write lock; commit when
        it returns, roll back when it raises."""
        ...

    def write_now(self, body: Callable[[Connection], T]) -> T | Busy:
        """``write`` on the calling thread when the lock is free at once; BUSY (nothing
        done) when it is not, or when this backend cannot write without waiting."""
        ...

    @property
    def single_statements(self) -> bool:
        """Whether ``run_single`` works here (``policies.audit.single``)."""
        ...

    async def run_single(self, sql: str, params: Sequence[Any], *, durable: bool = True) -> Any:
        """Run one statement as its own transaction; its first column of its first row.

        Raises: the driver's errors (a constraint violation: nothing was written).
        """
        ...

    async def run_batch(self, first: Statements, then: Then, *, durable: bool = True) -> bool:
        """In one transaction: run the statements ``first``, give the first row of the
        last one (None: no row) to ``then``, run each statement ``then`` returns.
        Commit when every one of them returned 1; otherwise roll all back and return
        False (as for a constraint violation, or ``then`` returning no statements).

        Raises: the driver's errors other than a constraint violation.
        """
        ...

    async def dispose(self) -> None: ...


class SqliteBackend:
    def __init__(self, url: URL) -> None:
        self._engine = sa.create_engine(
            url.set(drivername="sqlite+pysqlite"),
            connect_args={**sqlite_connect_args(), "check_same_thread": False},
            poolclass=sa.pool.QueuePool,
            pool_size=_READERS + 2,
            max_overflow=0,
        )
        install_sqlite_hooks(self._engine)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="execgate-audit-write")
        self._readers = ThreadPoolExecutor(_READERS, thread_name_prefix="execgate-audit-read")
        self._inline: Connection | None = None
        self._inline_commits = 0

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

    async def write(self, body: Callable[[Connection], T], *, durable: bool = True) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, functools.partial(self._run, body, True))

    def write_now(self, body: Callable[[Connection], T]) -> T | Busy:
        conn, raw = self._inline_connection()
        try:
            # On the driver: SQLAlchemy's begin would not tell a busy lock from a failure
            # cleanly, and the connection is told to emit no BEGIN of its own.
            raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                return BUSY
            raise
        try:
            with conn.begin():
                result = body(conn)
        finally:
            if raw.in_transaction:
                # The body or COMMIT failed and the transaction is still open: it holds
                # the write lock, so end it now (or drop the connection).
                try:
                    raw.rollback()
                except sqlite3.Error:
                    self._drop_inline()
        self._inline_commits += 1
        if self._inline_commits % _CHECKPOINT_EVERY == 0:
            self._checkpoint_soon()
        return result

    def _inline_connection(self) -> tuple[Connection, sqlite3.Connection]:
        conn = self._inline
        if conn is None or conn.closed or conn.invalidated:
            conn = self._engine.connect()
            conn.execution_options(**{INLINE_OPTION: True})
            self._inline = conn
            raw = driver(conn)
            # Never wait on the loop: a held lock sends the write to the writer thread.
            raw.execute("PRAGMA busy_timeout=0")
            raw.execute("PRAGMA wal_autocheckpoint=0")
        return conn, driver(conn)

    def _drop_inline(self) -> None:
        conn, self._inline = self._inline, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()

    def _checkpoint_soon(self) -> None:
        try:
            done = self._writer.submit(self._checkpoint_wal)
        except RuntimeError:  # shutting down: the last connection's close checkpoints
            return
        done.add_done_callback(_log_failure)

    def _checkpoint_wal(self) -> None:
        with self._engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").all()

    single_statements = False

    async def run_single(self, sql: str, params: Sequence[Any], *, durable: bool = True) -> Any:
        raise NotImplementedError("SQLite writes whole transactions on the loop instead")

    async def run_batch(self, first: Statements, then: Then, *, durable: bool = True) -> bool:
        raise NotImplementedError("SQLite writes whole transactions on the loop instead")

    async def dispose(self) -> None:
        def close() -> None:
            self._writer.shutdown(wait=True)
            self._readers.shutdown(wait=True)
            if self._inline is not None:
                self._inline.close()
            self._engine.dispose()

        await asyncio.to_thread(close)


class PostgresBackend:
    single_statements = True

    def __init__(self, url: URL) -> None:
        self._engine = create_async_engine(
            url, connect_args=postgres_connect_args(), pool_timeout=CONNECT_TIMEOUT_S
        )
        _, self._connect_args = self._engine.dialect.create_connect_args(url)
        # Single statements go on connections of their own, held open (no pool checkout,
        # no reset on return): one whose commits wait for the disk, one whose do not.
        self._direct: dict[bool, asyncpg.Connection] = {}

    async def _connection(self, durable: bool) -> asyncpg.Connection:
        conn = self._direct.get(durable)
        if conn is None or conn.is_closed():
            settings = {} if durable else {"synchronous_commit": "off"}
            conn = await asyncpg.connect(
                **self._connect_args, **postgres_connect_args(), server_settings=settings
            )
            self._direct[durable] = conn
        return conn

    def _drop(self, durable: bool, conn: asyncpg.Connection) -> None:
        # Broken, timed out or cancelled mid-statement: start the next one afresh.
        if self._direct.get(durable) is conn:
            del self._direct[durable]
        conn.terminate()

    async def run_single(self, sql: str, params: Sequence[Any], *, durable: bool = True) -> Any:
        conn = await self._connection(durable)
        try:
            return await conn.fetchval(sql, *params)
        except asyncpg.IntegrityConstraintViolationError:
            raise  # the statement was rolled back; the connection is fine
        except BaseException:
            self._drop(durable, conn)
            raise

    async def run_batch(self, first: Statements, then: Then, *, durable: bool = True) -> bool:
        conn = await self._connection(durable)
        tx = conn.transaction()
        try:
            await tx.start()
            try:
                row = None
                for sql, values in first:
                    row = await conn.fetchrow(sql, *values)
                statements = then(row)
                done = bool(statements)
                for sql, values in statements:
                    if await conn.fetchval(sql, *values) != 1:
                        done = False
                        break
            except asyncpg.IntegrityConstraintViolationError:
                done = False  # the transaction is aborted: none of it stands
            await (tx.commit() if done else tx.rollback())
            return done
        except BaseException:
            self._drop(durable, conn)
            raise

    async def read(self, body: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        async with self._engine.connect() as conn:
            if snapshot:
                await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                return await conn.run_sync(body)

    async def write(self, body: Callable[[Connection], T], *, durable: bool = True) -> T:
        async with self._engine.connect() as conn, conn.begin():
            await conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY}
            )
            if not durable:
                # The commit returns before its WAL record is flushed; the next
                # durable commit (or the WAL writer, within wal_writer_delay) flushes
                # it. A server crash in between loses this transaction, never part
                # of it, and never a durable one committed after it.
                await conn.execute(sa.text("SET LOCAL synchronous_commit = off"))
            return await conn.run_sync(body)

    def write_now(self, body: Callable[[Connection], T]) -> T | Busy:
        # asyncpg only talks from the event loop through awaits: always the queue.
        return BUSY

    async def dispose(self) -> None:
        direct, self._direct = list(self._direct.values()), {}
        for conn in direct:
            with contextlib.suppress(*_CLOSE_ERRORS):
                await conn.close(timeout=CONNECT_TIMEOUT_S)
        await self._engine.dispose()


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    # The extended code (e.g. SQLITE_BUSY_RECOVERY) carries the primary one in its low byte.
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _log_failure(done: Future[None]) -> None:
    exc = done.exception()
    if exc is not None:
        logger.error("audit store: WAL checkpoint failed", exc_info=exc)


def open_backend(url: str) -> Backend:
    """A backend for ``url`` (no connection is made yet).

    Raises: ConfigError for an unsupported URL.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return SqliteBackend(parsed)
    return PostgresBackend(parsed)
