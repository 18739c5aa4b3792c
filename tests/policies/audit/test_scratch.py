"""Scratch PostgreSQL databases for the suite and the benchmarks: fresh, then gone."""

from __future__ import annotations

import os
import socket

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.engine import make_url

from policies.audit.scratch import scratch_database
from policies.errors import AuditUnavailable, ConfigError

PG_ENV = "EXECGATE_TEST_DATABASE_URL"


async def _connect(url: str) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database
    )


async def _databases(server_url: str) -> set[str]:
    conn = await _connect(server_url)
    try:
        return {row[0] for row in await conn.fetch("SELECT datname FROM pg_database")}
    finally:
        await conn.close()


@pytest.mark.postgres
@pytest.mark.skipif(
    not os.environ.get(PG_ENV),
    reason=f"needs PostgreSQL: {PG_ENV}=postgresql+asyncpg://postgres@127.0.0.1:5432/test",
)
async def test_a_scratch_database_starts_empty_and_is_dropped_with_a_session_still_open() -> None:
    server = os.environ[PG_ENV]
    async with scratch_database(server, prefix="execgate_test") as url:
        name = make_url(url).database
        assert name is not None and name.startswith("execgate_test_")
        assert name in await _databases(server)
        session = await _connect(url)
        tables = await session.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert tables == 0
    # The session was still connected when the database was dropped.
    assert name not in await _databases(server)
    session.terminate()


async def test_an_unreachable_server_is_audit_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now: the connection is refused.
    with pytest.raises(AuditUnavailable):
        async with scratch_database(
            f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres", prefix="execgate_test"
        ):
            pass


async def test_a_scratch_database_needs_a_postgresql_url() -> None:
    with pytest.raises(ConfigError):
        async with scratch_database("sqlite+aiosqlite:///x.db", prefix="execgate_test"):
            pass
