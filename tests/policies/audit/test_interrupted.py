"""A process that dies mid-exec leaves a RUNNING intent; the next start marks it
INTERRUPTED, while the intents of live processes stay RUNNING."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from policies.audit import SqlAuditStore, open_audit_store
from policies.audit.owner import hostname
from policies.ports import ExecOutcome, ExecStatus
from policies.types import AuditId
from tests.policies.audit.support import INTENT, intent, writer_process


async def _status(store: SqlAuditStore, audit_id: AuditId) -> ExecStatus:
    return (await store.get_exec(audit_id)).intent.status


async def test_intent_of_a_killed_process_is_marked_interrupted(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    async with writer_process(migrated_url) as (proc, audit_id):
        proc.kill()
        await proc.wait()

    assert await audit_store.mark_interrupted() == 1
    record = await audit_store.get_exec(audit_id)
    assert record.intent.status is ExecStatus.INTERRUPTED
    assert record.outcome is not None and record.outcome.status is ExecStatus.INTERRUPTED
    assert await audit_store.mark_interrupted() == 0
    assert (await audit_store.verify()).ok


async def test_intent_of_a_live_process_stays_running(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    async with writer_process(migrated_url) as (_proc, audit_id):
        assert await audit_store.mark_interrupted() == 0
        assert await _status(audit_store, audit_id) is ExecStatus.RUNNING


async def test_own_running_intents_stay_running(audit_store: SqlAuditStore) -> None:
    audit_id = await audit_store.record_intent(INTENT)

    assert await audit_store.mark_interrupted() == 0
    assert await _status(audit_store, audit_id) is ExecStatus.RUNNING


# This process's pid, but written by an earlier process that had the same pid.
EARLIER_SAME_PID = f"{hostname()}:{os.getpid()}:earlier-process"


@asynccontextmanager
async def _store_as(url: str, owner: str) -> AsyncIterator[SqlAuditStore]:
    store = await open_audit_store(url, checkpoint_path=None, owner=owner)
    try:
        yield store
    finally:
        await store.aclose()


async def test_reused_pid_with_another_nonce_is_marked_interrupted(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    async with _store_as(migrated_url, EARLIER_SAME_PID) as earlier:
        audit_id = await earlier.record_intent(INTENT)

    assert await audit_store.mark_interrupted() == 1
    assert await _status(audit_store, audit_id) is ExecStatus.INTERRUPTED


async def test_other_hosts_and_finished_execs_are_left_alone(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    async with _store_as(migrated_url, "other-host:1:x") as elsewhere:
        remote = await elsewhere.record_intent(INTENT)
    async with _store_as(migrated_url, EARLIER_SAME_PID) as earlier:
        done = await earlier.record_intent(INTENT)
        await earlier.record_outcome(done, ExecOutcome(status=ExecStatus.COMPLETED))
        pending = await earlier.record_intent(intent(status=ExecStatus.PENDING_APPROVAL))

    assert await audit_store.mark_interrupted() == 0
    assert await _status(audit_store, remote) is ExecStatus.RUNNING
    assert await _status(audit_store, done) is ExecStatus.COMPLETED
    assert await _status(audit_store, pending) is ExecStatus.PENDING_APPROVAL
