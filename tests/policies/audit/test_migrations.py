"""Schema migrations: up and down on every database, no drift from the table metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from policies.audit import open_audit_store
from policies.audit.db_engine import create_engine
from policies.audit.migrate import current, downgrade, head_revision, upgrade
from policies.audit.tables import in_metadata, metadata
from policies.errors import AuditUnavailable, ConfigError
from tests.policies.audit.support import execute

REPO = Path(__file__).resolve().parents[3]
TABLES = {
    "exec_sessions",
    "approvals",
    "approval_votes",
    "conv_sessions",
    "audit_events",
    "console_nonces",
}


async def _inspect(url: str, fn: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _tables(conn: Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def _drift(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"include_name": in_metadata})
    return list(compare_metadata(context, metadata))


async def test_migrations_upgrade_to_head_and_back_to_base(database_url: str) -> None:
    assert await current(database_url) is None

    await upgrade(database_url)
    assert await current(database_url) == head_revision()
    assert TABLES <= await _inspect(database_url, _tables)

    await downgrade(database_url)
    assert await current(database_url) is None
    assert not TABLES & await _inspect(database_url, _tables)


async def test_migrated_schema_has_no_drift_from_the_table_metadata(migrated_url: str) -> None:
    assert await _inspect(migrated_url, _drift) == []


async def test_upgrading_twice_is_harmless(migrated_url: str) -> None:
    await upgrade(migrated_url)

    assert await current(migrated_url) == head_revision()


async def test_store_refuses_a_database_without_schema(database_url: str) -> None:
    with pytest.raises(AuditUnavailable) as info:
        await open_audit_store(database_url, checkpoint_path=None)

    assert info.value.fields["operation"] == "check schema"


async def test_store_refuses_a_database_at_another_schema_revision(migrated_url: str) -> None:
    await execute(migrated_url, "UPDATE alembic_version SET version_num = '0000'")

    with pytest.raises(AuditUnavailable) as info:
        await open_audit_store(migrated_url, checkpoint_path=None)

    assert info.value.fields["found"] == "0000"


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("mysql+aiomysql://db/audit", id="unsupported-backend"),
        pytest.param("not a url", id="malformed"),
        pytest.param("sqlite+aiosqlite://", id="sqlite-in-memory"),
    ],
)
async def test_unsupported_database_urls_are_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        await upgrade(url)


async def test_unknown_revision_is_a_config_error(database_url: str) -> None:
    with pytest.raises(ConfigError):
        await upgrade(database_url, "no-such-revision")


def test_alembic_ini_at_the_repository_root_finds_the_migrations() -> None:
    config = Config(str(REPO / "alembic.ini"))

    assert ScriptDirectory.from_config(config).get_current_head() == head_revision()
