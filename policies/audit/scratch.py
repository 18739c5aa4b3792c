"""Scratch PostgreSQL databases: a fresh, empty database on a server, dropped afterwards.

The test suite and the benchmarks run the audit store against one per test or run:

    async with scratch_database("postgresql+asyncpg://postgres@127.0.0.1:5432/test",
                                prefix="execgate_test") as url:
        await migrate.upgrade(url)

The server URL names the role to connect as and the database to issue ``CREATE
DATABASE`` from (``postgres`` when it names none); the yielded URL differs only in the
database name.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import URL

from policies.audit.db_engine import CONNECT_TIMEOUT_S, parse_url
from policies.audit.errors import STORAGE_ERRORS
from policies.errors import AuditUnavailable, ConfigError


def _admin(url: URL) -> dict[str, Any]:
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 5432,
        "user": url.username or "postgres",
        "password": url.password,
        "database": url.database or "postgres",
        "timeout": CONNECT_TIMEOUT_S,
    }


async def _execute(admin: dict[str, Any], statement: str) -> None:
    try:
        conn = await asyncpg.connect(**admin)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()
    except STORAGE_ERRORS as exc:
        # Callers probe for a server this way: no server is an answer, not a fault to log.
        raise AuditUnavailable("the PostgreSQL server did not create or drop a database") from exc


@contextlib.asynccontextmanager
async def scratch_database(server_url: str, *, prefix: str) -> AsyncIterator[str]:
    """The URL of a new, empty database named ``PREFIX_<random>``; dropped on exit even
    while sessions are still connected to it.

    Raises: ConfigError when ``server_url`` is not a PostgreSQL URL; AuditUnavailable
    when the server cannot be reached or refuses to create the database.
    """
    url = parse_url(server_url)
    if url.get_backend_name() != "postgresql":
        raise ConfigError("a scratch database needs a postgresql+asyncpg:// server URL")
    if not prefix.isidentifier():
        raise ValueError(f"scratch database prefix {prefix!r} is not an identifier")
    admin = _admin(url)
    name = f"{prefix}_{secrets.token_hex(6)}"
    await _execute(admin, f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        await _execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
