"""Console sign-in across replicas: the one-time values (a link's nonce, an OpenID
Connect login's state) live in the audit database, so every replica on it, and a
restarted one, accepts each of them once. Two console apps over two stores on one
database stand for two replicas."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from policies.audit import SqlAuditStore, open_audit_store
from policies.rules.holder import PolicyHolder
from policies.service.core import ExecService
from server.console.signin import console_key, make_link
from server.settings import Settings
from tests.console.conftest import BASE, HERE, replica, shared_settings


@asynccontextmanager
async def restarted(settings: Settings, url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A replica started afresh on the database at ``url``."""
    store = await open_audit_store(url, checkpoint_path=None)
    try:
        async with replica(settings, store) as client:
            yield client
    finally:
        await store.aclose()


async def test_a_link_made_by_one_replica_signs_in_on_another_and_only_once(
    tmp_path: Path, audit_store: SqlAuditStore, other_store: SqlAuditStore, migrated_url: str
) -> None:
    settings = shared_settings(tmp_path)
    link = make_link(console_key(tmp_path), BASE, "local:alice").removeprefix(BASE)
    async with replica(settings, audit_store) as one, replica(settings, other_store) as two:
        used = await two.get(link)
        assert used.status_code == 303
        assert (await two.get("/console/")).status_code == 200
        # The same link again, on the replica that made it and on the one that used it.
        for client in (one, two):
            again = await client.get(link)
            assert again.status_code == 403
            assert 'data-code="signin_refused"' in again.text
        assert (await one.get("/console/")).status_code == 401
    # A restart forgets nothing: the used link still signs nobody in.
    async with restarted(settings, migrated_url) as fresh:
        assert (await fresh.get(link)).status_code == 403
        unused = make_link(console_key(tmp_path), BASE, "local:bob").removeprefix(BASE)
        assert (await fresh.get(unused)).status_code == 303


async def test_a_signin_state_is_taken_once_on_any_replica(
    audit_store: SqlAuditStore, other_store: SqlAuditStore
) -> None:
    policies = PolicyHolder(HERE / "policy.yaml")
    one, two = (
        ExecService(policies=policies, audit=store, providers={}, default_provider="local").review
        for store in (audit_store, other_store)
    )
    await one.hold_state("oidc:_state_execgate_abc", '{"data": {"nonce": "n1"}}', 600)
    assert await two.take_state("oidc:_state_execgate_abc") == '{"data": {"nonce": "n1"}}'
    assert await one.take_state("oidc:_state_execgate_abc") is None
    # An expired value is gone too, and a nonce is used once across replicas.
    await one.hold_state("oidc:_state_execgate_old", "{}", -1)
    assert await two.take_state("oidc:_state_execgate_old") is None
    assert await one.use_nonce("link:n2", 60)
    assert not await two.use_nonce("link:n2", 60)
