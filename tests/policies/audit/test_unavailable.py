"""Fail closed: when the audit store cannot record, callers get AuditUnavailable with a
safe message, and nothing is half-written."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.audit import SqlAuditStore, open_audit_store
from policies.errors import AuditUnavailable
from tests.policies.audit.support import INTENT, execute, scalar


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(
            f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/audit", id="postgresql"
        ),
        pytest.param("sqlite+aiosqlite:///{tmp}/no/such/dir/audit.db", id="sqlite"),
    ],
)
async def test_unreachable_database_is_audit_unavailable(url: str, tmp_path: Path) -> None:
    with pytest.raises(AuditUnavailable) as info:
        await open_audit_store(url.format(tmp=tmp_path), checkpoint_path=None)

    assert info.value.code == "audit_unavailable"
    assert info.value.fields["operation"] == "connect"
    assert info.value.__cause__ is not None


async def test_storage_failure_while_recording_is_audit_unavailable_and_rolls_back(
    audit_store: SqlAuditStore, migrated_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await execute(migrated_url, "DROP TABLE audit_events")

    with caplog.at_level(logging.ERROR, logger="policies.audit"):
        with pytest.raises(AuditUnavailable) as info:
            await audit_store.record_intent(INTENT)

    assert info.value.fields["operation"] == "record intent"
    assert info.value.safe_message == AuditUnavailable.default_message
    # The intent row and its event share one transaction: neither was kept.
    assert await scalar(migrated_url, "SELECT count(*) FROM exec_sessions") == 0
    assert [r.exc_info is not None for r in caplog.records] == [True]


async def test_reads_fail_closed_too(audit_store: SqlAuditStore, migrated_url: str) -> None:
    await execute(migrated_url, "DROP TABLE approval_votes")
    await execute(migrated_url, "DROP TABLE approvals")

    with pytest.raises(AuditUnavailable):
        await audit_store.list_approvals()


KEY = Ed25519PrivateKey.generate()


async def test_checkpoint_directory_that_cannot_exist_is_audit_unavailable(
    migrated_url: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")

    with pytest.raises(AuditUnavailable):
        await open_audit_store(
            migrated_url, checkpoint_path=blocker / "sub" / "cp.json", checkpoint_key=KEY
        )
