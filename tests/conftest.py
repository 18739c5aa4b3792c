"""Shared fixtures: a fresh audit database per test, migrated, and an open audit store.

The suite runs against SQLite by default, and against PostgreSQL instead when
EXECGATE_TEST_DATABASE_URL names a server (CI runs `make test` once each way).

Each test process migrates one template database; a test that asks for
``migrated_url`` gets a copy of it (see tests/support/databases.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.audit import SqlAuditStore, open_audit_store
from tests.support.databases import (
    MigratedDatabase,
    PostgresDatabases,
    copy_sqlite,
    migrate_sqlite_template,
    sqlite_url,
)
from tests.support.traces import Recording, recording

PG_ENV = "EXECGATE_TEST_DATABASE_URL"
# A fixed key: child processes in tests sign with the same one.
CHECKPOINT_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))

_BACKENDS = (
    [pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]
    if os.environ.get(PG_ENV)
    else [pytest.param("sqlite", id="sqlite")]
)


@pytest_asyncio.fixture(scope="session", autouse=True)
async def session_loop() -> asyncio.AbstractEventLoop:
    """The one event loop of the run (pyproject: asyncio_default_*_loop_scope)."""
    return asyncio.get_running_loop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This test process's migrated SQLite database (never opened by a test)."""
    path = tmp_path_factory.mktemp("template") / "audit.db"
    migrate_sqlite_template(path)
    return path


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    """Scratch databases on the PostgreSQL test server, with a migrated template."""
    databases = PostgresDatabases(os.environ[PG_ENV])
    try:
        databases.migrate_template()
        yield databases
    finally:
        databases.close()


@pytest.fixture(params=_BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL of a fresh, empty database (no tables); already at the newest schema when
    the test also asks for ``migrated_url`` (a copy of the migrated template)."""
    migrated = "migrated_url" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "audit.db"
        if migrated:
            yield copy_sqlite(request.getfixturevalue("sqlite_template"), path)
        else:
            yield sqlite_url(path)
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    name = await databases.create(migrated=migrated)
    try:
        yield databases.url_of(name)
    finally:
        databases.drop_later(name)


@pytest.fixture(scope="session")
def migrated_database(request: pytest.FixtureRequest) -> MigratedDatabase:
    """``async with migrated_database(directory) as url``: a copy of the migrated
    template for a longer-lived fixture (a module's shared server); dropped on exit."""

    @asynccontextmanager
    async def new(directory: Path) -> AsyncIterator[str]:
        if not os.environ.get(PG_ENV):
            yield copy_sqlite(request.getfixturevalue("sqlite_template"), directory / "audit.db")
            return
        databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
        name = await databases.create(migrated=True)
        try:
            yield databases.url_of(name)
        finally:
            databases.drop_later(name)

    return new


@pytest.fixture(scope="module", params=_BACKENDS)
async def module_migrated_url(
    migrated_database: MigratedDatabase, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A migrated database shared by the tests of one module; parametrised like
    ``database_url``, so their ids name the backend and they carry its marks."""
    async with migrated_database(tmp_path_factory.mktemp("module-db")) as url:
        yield url


@pytest.fixture
async def migrated_url(database_url: str) -> str:
    """``database_url`` at the newest schema."""
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


@pytest.fixture
def spans() -> Iterator[Recording]:
    """A tracer provider recording spans in memory, and its exporter."""
    with recording() as recorded:
        yield recorded
