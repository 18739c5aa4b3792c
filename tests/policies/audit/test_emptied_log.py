"""Attacker tests: someone with write access to the database and the data directory
(no signing key) empties the log and deletes the checkpoint, hoping to pass for a
fresh, empty log."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.audit import SqlAuditStore, open_audit_store
from policies.audit.checkpoint import read_checkpoint
from policies.audit.review import verify_log
from policies.audit.tables import PROJECTIONS
from policies.errors import AuditUnavailable
from tests.conftest import CHECKPOINT_KEY
from tests.policies.audit.support import INTENT, execute, scalar

PUBLIC = CHECKPOINT_KEY.public_key()


async def _empty(url: str) -> None:
    for table in ("approval_votes", "approvals", "exec_sessions", "conv_sessions"):
        await execute(url, f"DELETE FROM {table}")
    await execute(url, "DELETE FROM audit_events")
    assert {name for name in PROJECTIONS} == {"exec", "approval", "session"}


async def test_an_emptied_log_with_its_checkpoint_deleted_fails_verify(
    audit_store: SqlAuditStore, migrated_url: str, checkpoint_path: Path
) -> None:
    for _ in range(3):
        await audit_store.record_intent(INTENT)
    await audit_store.aclose()
    before = await verify_log(
        migrated_url, checkpoint_path=checkpoint_path, public_key=PUBLIC, strict=True
    )
    assert (before.ok, before.rows_checked) == (True, 3)  # control: the log verified
    await _empty(migrated_url)
    checkpoint_path.unlink()

    strict = await verify_log(
        migrated_url, checkpoint_path=checkpoint_path, public_key=PUBLIC, strict=True
    )
    lenient = await verify_log(migrated_url, checkpoint_path=checkpoint_path, public_key=PUBLIC)

    assert await scalar(migrated_url, "SELECT count(*) FROM audit_events") == 0
    assert (strict.ok, strict.problem) == (False, "checkpoint")
    assert (lenient.ok, lenient.problem) == (False, "checkpoint")


async def test_a_writer_refuses_to_start_a_new_chain_when_the_checkpoint_is_gone(
    audit_store: SqlAuditStore, migrated_url: str, checkpoint_path: Path
) -> None:
    await audit_store.record_intent(INTENT)
    await audit_store.aclose()
    assert checkpoint_path.exists()  # control: the log had a checkpoint
    await _empty(migrated_url)
    checkpoint_path.unlink()

    with pytest.raises(AuditUnavailable) as refused:
        store = await open_audit_store(
            migrated_url, checkpoint_path=checkpoint_path, checkpoint_key=CHECKPOINT_KEY
        )
        await store.aclose()

    assert refused.value.fields["kind"] == "checkpoint_missing"
    assert not checkpoint_path.exists()


async def test_a_checkpoint_deleted_while_a_writer_runs_is_not_restarted(
    audit_store: SqlAuditStore, checkpoint_path: Path
) -> None:
    await audit_store.record_intent(INTENT)
    assert (await audit_store.verify(strict=True)).ok  # control: the writer checkpoints
    checkpoint_path.unlink()

    await audit_store.record_intent(INTENT)
    report = await audit_store.verify(strict=True)

    assert (report.ok, report.problem) == (False, "checkpoint")
    assert not checkpoint_path.exists()


async def test_a_new_log_starts_with_a_signed_checkpoint_of_no_events(
    migrated_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "new" / "audit-checkpoint.json"
    store = await open_audit_store(
        migrated_url, checkpoint_path=path, checkpoint_key=CHECKPOINT_KEY, new_log=True
    )
    try:
        report = await store.verify(strict=True)
    finally:
        await store.aclose()

    genesis = read_checkpoint(path, PUBLIC)
    assert genesis is not None and genesis.segments == ()
    assert (report.ok, report.rows_checked) == (True, 0)
