"""A replica says whether it can serve: /healthz while the process is up, /readyz only
while its audit database answers with the current schema and its checkpoint key is in
place. A replica with the local host disabled serves no FC API of its own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from policies.audit.revision import SCHEMA_HEAD
from server.localstate import SIGNING_KEY_FILE
from server.serve import Running, running_server
from server.settings import load_settings
from tests.e2e.conftest import write_config
from tests.policies.audit.support import execute

REPLICA = "[local_host]\nenabled = false\n"


@contextlib.asynccontextmanager
async def replica(tmp_path: Path, database_url: str) -> AsyncIterator[Running]:
    config, _ = write_config(tmp_path, database_url, extra=REPLICA)
    settings = load_settings(config, environ={})
    async with running_server(settings, port=0) as running:
        yield running


async def test_readyz_is_ready_with_database_schema_and_checkpoint_key_in_place(
    tmp_path: Path, database_url: str
) -> None:
    async with replica(tmp_path, database_url) as running, httpx.AsyncClient() as http:
        ready = await http.get(running.url + "/readyz")
        alive = await http.get(running.url + "/healthz")

    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "database": {"status": "ok"},
        "checkpoint_key": {"status": "ok"},
    }
    assert alive.status_code == 200


async def test_readyz_is_not_ready_when_the_schema_is_not_current(
    tmp_path: Path, database_url: str
) -> None:
    async with replica(tmp_path, database_url) as running, httpx.AsyncClient() as http:
        assert (await http.get(running.url + "/readyz")).status_code == 200
        await execute(database_url, "UPDATE alembic_version SET version_num = '0001'")

        ready = await http.get(running.url + "/readyz")
        alive = await http.get(running.url + "/healthz")

        await execute(database_url, f"UPDATE alembic_version SET version_num = '{SCHEMA_HEAD}'")
        again = await http.get(running.url + "/readyz")

    assert ready.status_code == 503
    assert ready.json()["checks"]["database"]["code"] == "audit_unavailable"
    assert alive.status_code == 200
    assert again.status_code == 200


async def test_readyz_is_not_ready_without_the_checkpoint_signing_key(
    tmp_path: Path, database_url: str
) -> None:
    async with replica(tmp_path, database_url) as running, httpx.AsyncClient() as http:
        key = tmp_path / "data" / SIGNING_KEY_FILE
        assert key.is_file()
        key.rename(key.with_suffix(".moved"))

        ready = await http.get(running.url + "/readyz")

    assert ready.status_code == 503
    assert ready.json()["checks"]["checkpoint_key"]["code"] == "checkpoint_key_missing"
    assert ready.json()["checks"]["database"] == {"status": "ok"}


async def test_a_replica_with_the_local_host_disabled_serves_no_fc_api(
    tmp_path: Path, database_url: str
) -> None:
    async with replica(tmp_path, database_url) as running, httpx.AsyncClient() as http:
        fc = await http.get(running.url + "/2023-03-30/functions/demo-api/instances")
        alive = await http.get(running.url + "/healthz")

    assert fc.status_code == 404
    assert alive.status_code == 200
