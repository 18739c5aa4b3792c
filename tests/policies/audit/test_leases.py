"""Replicas own their RUNNING rows by lease: a replica whose lease expired (it died, on
any host) has its rows marked interrupted by another; a replica that renews in time
keeps them, whatever its host."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from policies.audit import SqlAuditStore, open_audit_store
from policies.audit.keeper import LeaseKeeper
from policies.audit.leases import LEASE_LOST_ERROR
from policies.ports import ExecStatus
from policies.types import AuditId
from tests.policies.audit.support import INTENT, scalar

LONG = 3600.0


@asynccontextmanager
async def _replica(url: str, owner: str) -> AsyncIterator[SqlAuditStore]:
    store = await open_audit_store(url, checkpoint_path=None, owner=owner)
    try:
        yield store
    finally:
        await store.aclose()


async def _status(store: SqlAuditStore, audit_id: AuditId) -> ExecStatus:
    return (await store.get_exec(audit_id)).intent.status


async def test_rows_of_a_replica_on_another_host_whose_lease_expired_are_marked_interrupted(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    async with _replica(migrated_url, "replica-a:1:boot") as dead:
        await dead.renew_lease(0.0)  # its last renewal, and then it stopped
        audit_id = await dead.record_intent(INTENT)
    # The host/pid check cannot judge another host's process:
    assert await audit_store.mark_interrupted() == 0

    assert await audit_store.reap_expired_leases() == 1

    record = await audit_store.get_exec(audit_id)
    assert record.intent.status is ExecStatus.INTERRUPTED
    assert record.outcome is not None and record.outcome.error == LEASE_LOST_ERROR
    assert await audit_store.reap_expired_leases() == 0
    assert (await audit_store.verify()).ok


async def test_a_replica_that_renews_within_its_lease_keeps_its_running_rows(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    async with (
        _replica(migrated_url, "replica-slow:1:boot") as slow,
        _replica(migrated_url, "replica-dead:2:boot") as dead,
    ):
        await slow.renew_lease(LONG)
        kept = await slow.record_intent(INTENT)
        await dead.renew_lease(0.0)
        taken = await dead.record_intent(INTENT)

        assert await audit_store.reap_expired_leases() == 1

        assert await _status(audit_store, kept) is ExecStatus.RUNNING
        assert await _status(audit_store, taken) is ExecStatus.INTERRUPTED  # the reaper ran
        assert await slow.renew_lease(LONG) is True


async def test_a_replica_learns_its_lease_was_taken_when_it_renews(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    async with _replica(migrated_url, "replica-a:1:boot") as late:
        assert await late.renew_lease(0.0) is False  # first renewal: nothing held before
        audit_id = await late.record_intent(INTENT)
        assert await audit_store.reap_expired_leases() == 1

        assert await late.renew_lease(LONG) is False
        assert await late.renew_lease(LONG) is True
        assert await _status(audit_store, audit_id) is ExecStatus.INTERRUPTED


async def test_replicas_reaping_at_once_mark_each_row_interrupted_once(
    audit_store: SqlAuditStore, other_store: SqlAuditStore, migrated_url: str
) -> None:
    async with _replica(migrated_url, "replica-a:1:boot") as dead:
        await dead.renew_lease(0.0)
        ids = [await dead.record_intent(INTENT) for _ in range(5)]

    counts = await asyncio.gather(
        audit_store.reap_expired_leases(), other_store.reap_expired_leases()
    )

    assert sorted(counts) == [0, 5]
    assert {await _status(audit_store, i) for i in ids} == {ExecStatus.INTERRUPTED}
    assert (await audit_store.verify()).ok


async def test_lease_keeper_holds_the_lease_and_releases_it_with_its_rows_at_exit(
    migrated_url: str,
) -> None:
    async with _replica(migrated_url, "replica-a:1:boot") as store:
        keeper = LeaseKeeper(store, ttl=LONG, every=LONG / 2)
        async with keeper.running():
            held = await scalar(
                migrated_url,
                "SELECT count(*) FROM replica_leases WHERE owner = 'replica-a:1:boot'",
            )
            assert held == 1
            audit_id = await store.record_intent(INTENT)
            with anyio.fail_after(5):
                await keeper.beat.wait()
        assert await _status(store, audit_id) is ExecStatus.INTERRUPTED
        left = await scalar(migrated_url, "SELECT count(*) FROM replica_leases")
        assert left == 0
