"""Shared fixtures: a fresh audit database per test, migrated, and an open audit store.

The suite runs against SQLite by default, and against PostgreSQL instead when
EXECGATE_TEST_DATABASE_URL names a server (CI runs `make test` once each way)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.audit import SqlAuditStore, open_audit_store
from policies.audit.migrate import upgrade
from policies.audit.scratch import scratch_database

PG_ENV = "EXECGATE_TEST_DATABASE_URL"
# A fixed key: child processes in tests sign with the same one.
CHECKPOINT_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))

_BACKENDS = (
    [pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]
    if os.environ.get(PG_ENV)
    else [pytest.param("sqlite", id="sqlite")]
)


@pytest.fixture(params=_BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL of a fresh, empty database (no tables)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
        return
    async with scratch_database(os.environ[PG_ENV], prefix="execgate_test") as url:
        yield url


@pytest.fixture
async def migrated_url(database_url: str) -> str:
    """``database_url`` upgraded to the newest schema."""
    await upgrade(database_url)
    return database_url


@pytest.fixture
def checkpoint_path(tmp_path: Path) -> Path:
    return tmp_path / "checkpoints" / "audit-checkpoint.json"


async def _open_store(url: str, checkpoint_path: Path) -> AsyncIterator[SqlAuditStore]:
    store = await open_audit_store(
        url, checkpoint_path=checkpoint_path, checkpoint_key=CHECKPOINT_KEY, new_log=True
    )
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture
async def audit_store(migrated_url: str, checkpoint_path: Path) -> AsyncIterator[SqlAuditStore]:
    """An open store on a migrated database, checkpointing to ``checkpoint_path``."""
    async for store in _open_store(migrated_url, checkpoint_path):
        yield store


@pytest.fixture
async def other_store(migrated_url: str, checkpoint_path: Path) -> AsyncIterator[SqlAuditStore]:
    """A second store on the same database and checkpoint, as another process has."""
    async for store in _open_store(migrated_url, checkpoint_path):
        yield store
