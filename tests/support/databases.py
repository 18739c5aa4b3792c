"""Test databases: empty ones, and copies of a template migrated once per test process.

Migrating costs about half a second per database (a second on PostgreSQL), and most
tests want the newest schema, so each test process (each xdist worker too) migrates one
template and every test gets a copy of it:

- SQLite: the template file is copied with SQLite's backup API (WAL-safe);
- PostgreSQL: ``CREATE DATABASE ... TEMPLATE`` the migrated template.

PostgreSQL scratch databases are dropped by a background thread, so a test's teardown
does not wait on ``DROP DATABASE``; the session waits for the last drops at its end.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from queue import SimpleQueue
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import URL

from policies.audit.db_engine import CONNECT_TIMEOUT_S, parse_url
from policies.audit.migrate import upgrade

PREFIX = "execgate_test"
T = TypeVar("T")
DROP_BATCH = 8
# ``async with migrated_database(directory) as url`` (the fixture in tests/conftest.py).
MigratedDatabase = Callable[[Path], AbstractAsyncContextManager[str]]


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a private loop in another thread (callable from a
    sync fixture whatever loop pytest-asyncio has set up in this one)."""
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="test-db-setup")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def migrate_sqlite_template(path: Path) -> str:
    """A migrated SQLite database at ``path``; its URL."""
    url = sqlite_url(path)
    run_sync(upgrade(url))
    return url


def copy_sqlite(template: Path, dest: Path) -> str:
    """A copy of the template database at ``dest``; its URL."""
    source = sqlite3.connect(template)
    target = sqlite3.connect(dest)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    return sqlite_url(dest)


class PostgresDatabases:
    """Scratch databases on one PostgreSQL server: created empty or from a template,
    dropped in the background."""

    def __init__(self, server_url: str) -> None:
        url = parse_url(server_url)
        if url.get_backend_name() != "postgresql":
            raise ValueError("the PostgreSQL test server URL must be postgresql+asyncpg://")
        self._url: URL = url
        self._drops: SimpleQueue[str | None] = SimpleQueue()
        self._dropper = threading.Thread(target=self._drop_loop, name="test-db-drop")
        self._dropper.start()
        self._template: str | None = None

    def _admin(self) -> dict[str, Any]:
        url = self._url
        return {
            "host": url.host or "127.0.0.1",
            "port": url.port or 5432,
            "user": url.username or "postgres",
            "password": url.password,
            "database": url.database or "postgres",
            "timeout": CONNECT_TIMEOUT_S,
        }

    async def _execute(self, statement: str) -> None:
        conn = await asyncpg.connect(**self._admin())
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    def url_of(self, name: str) -> str:
        return self._url.set(database=name).render_as_string(hide_password=False)

    async def create(self, *, migrated: bool) -> str:
        """A new database (empty, or a copy of the migrated template); its name."""
        name = f"{PREFIX}_{secrets.token_hex(6)}"
        if migrated:
            assert self._template is not None, "migrate_template() first"
            await self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
        else:
            await self._execute(f'CREATE DATABASE "{name}"')
        return name

    def migrate_template(self) -> None:
        """Create and migrate this process's template database."""

        async def build() -> str:
            name = await self.create(migrated=False)
            await upgrade(self.url_of(name))
            return name

        self._template = run_sync(build())

    def drop_later(self, name: str) -> None:
        self._drops.put(name)

    def _drop_loop(self) -> None:
        """Drop what is queued, a batch at a time: concurrent drops share PostgreSQL's
        work (a drop alone costs about a second on a loaded machine)."""

        async def drop(name: str) -> None:
            try:
                await self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception:
                return

        async def drop_all(names: list[str]) -> None:
            await asyncio.gather(*(drop(name) for name in names))

        done = False
        while not done:
            batch: list[str] = []
            item = self._drops.get()
            while True:
                if item is None:
                    done = True
                else:
                    batch.append(item)
                if done or len(batch) >= DROP_BATCH or self._drops.empty():
                    break
                item = self._drops.get()
            if batch:
                asyncio.run(drop_all(batch))

    def close(self) -> None:
        """Drop the template and wait for every pending drop."""
        if self._template is not None:
            self._drops.put(self._template)
        self._drops.put(None)
        self._dropper.join()
