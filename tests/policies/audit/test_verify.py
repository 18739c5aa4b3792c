"""``verify``: the hash chain, the signed checkpoint and the row tables catch tampering."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.audit import SqlAuditStore, open_audit_store
from policies.audit.chain import GENESIS_HASH
from policies.audit.checkpoint import Segment, encode_checkpoint, read_checkpoint
from policies.audit.db_engine import create_engine
from policies.audit.tables import audit_events
from policies.ports import ApprovalRequest, ExecOutcome, ExecStatus
from policies.types import ApprovalId, AuditId, SessionId
from tests.conftest import CHECKPOINT_KEY
from tests.policies.audit.support import INTENT, execute, scalar


@dataclass(frozen=True)
class Story:
    audit_id: AuditId
    approval_id: ApprovalId
    session_id: SessionId
    events: int


async def _populate(store: SqlAuditStore) -> Story:
    """One of everything: an exec with an outcome, an approval with a vote, a session."""
    audit_id = await store.record_intent(INTENT)
    await store.record_outcome(audit_id, ExecOutcome(status=ExecStatus.COMPLETED, exit_code=3))
    pending = await store.record_intent(INTENT)
    approval = await store.create_approval(
        ApprovalRequest(
            audit_id=pending,
            request_hash="0" * 64,
            requester="local:alice",
            target=INTENT.target,
            argv=INTENT.argv,
            reason="capture",
            rule_id="captures",
            approver_roles=("sre",),
            threshold=2,
            ttl_seconds=600,
            surface="cli",
            context={"channel": "C1"},
        )
    )
    await store.add_approval_vote(approval.approval_id, "local:bob", True)
    session = await store.create_session(
        principal="local:alice", target=INTENT.target, reason="debugging", cwd="/"
    )
    await store.update_session(session.session_id, cwd="/tmp", env={"A": "1"})
    return Story(audit_id, approval.approval_id, session.session_id, events=7)


async def _store(
    url: str, path: Path | None, key: Ed25519PrivateKey = CHECKPOINT_KEY
) -> SqlAuditStore:
    return await open_audit_store(url, checkpoint_path=path, checkpoint_key=key)


async def test_untouched_log_verifies_ok(audit_store: SqlAuditStore) -> None:
    story = await _populate(audit_store)

    report = await audit_store.verify()

    assert report.ok
    assert report.rows_checked == story.events
    assert report.problem is None


async def test_empty_log_verifies_ok(audit_store: SqlAuditStore) -> None:
    report = await audit_store.verify()

    assert (report.ok, report.rows_checked) == (True, 0)


async def test_event_hash_is_sha256_of_previous_hash_and_canonical_event(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    await audit_store.record_intent(INTENT)
    engine = create_engine(migrated_url)
    try:
        async with engine.connect() as conn:
            ev = (await conn.execute(sa.select(audit_events))).one()
    finally:
        await engine.dispose()

    body = {
        "seq": 1,
        "kind": "exec.intent",
        "subject": ev.subject,
        "payload": ev.payload,
        "created_at": ev.created_at.isoformat(timespec="microseconds"),
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    assert ev.prev_hash == "0" * 64
    assert ev.hash == hashlib.sha256((ev.prev_hash + canonical).encode()).hexdigest()
    assert json.loads(ev.payload)["argv"] == list(INTENT.argv)


async def test_edited_event_is_reported_with_its_seq(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    await _populate(audit_store)
    await execute(
        migrated_url, "UPDATE audit_events SET payload = replace(payload, 'ls', 'rm') WHERE seq = 1"
    )

    report = await audit_store.verify()

    assert (report.ok, report.problem, report.first_bad_seq) == (False, "edited", 1)


async def test_edited_event_with_a_recomputed_hash_breaks_the_next_link(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    await _populate(audit_store)
    await execute(migrated_url, "UPDATE audit_events SET hash = :h WHERE seq = 2", {"h": "f" * 64})

    report = await audit_store.verify()

    # Event 2's own hash no longer matches its content.
    assert (report.problem, report.first_bad_seq) == ("edited", 2)


async def test_deleted_event_is_reported_at_the_gap(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    await _populate(audit_store)
    await execute(migrated_url, "DELETE FROM audit_events WHERE seq = 3")

    report = await audit_store.verify()

    assert (report.ok, report.problem, report.first_bad_seq) == (False, "deleted", 3)
    assert report.rows_checked == 2


async def test_deleted_first_event_is_reported(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    await _populate(audit_store)
    await execute(migrated_url, "DELETE FROM audit_events WHERE seq = 1")

    report = await audit_store.verify()

    assert (report.problem, report.first_bad_seq) == ("deleted", 1)


@pytest.mark.parametrize(
    ("sql", "subject"),
    [
        pytest.param("UPDATE exec_sessions SET exit_code = 0", "audit_id", id="exec-exit-code"),
        pytest.param(
            "UPDATE exec_sessions SET argv = '[\"id\"]' WHERE status = 'completed'",
            "audit_id",
            id="exec-argv",
        ),
        pytest.param("UPDATE approvals SET threshold = 1", "approval_id", id="approval-threshold"),
        pytest.param(
            "UPDATE approval_votes SET approver = 'local:mallory'", "approval_id", id="vote"
        ),
        pytest.param("UPDATE conv_sessions SET cwd = '/etc'", "session_id", id="session-cwd"),
    ],
)
async def test_edited_row_is_reported_with_its_id(
    audit_store: SqlAuditStore, migrated_url: str, sql: str, subject: str
) -> None:
    story = await _populate(audit_store)
    await execute(migrated_url, sql)

    report = await audit_store.verify()

    assert (report.ok, report.problem) == (False, "edited")
    assert getattr(story, subject) in report.detail
    assert report.first_bad_seq is not None


async def test_deleted_exec_row_is_reported(audit_store: SqlAuditStore, migrated_url: str) -> None:
    story = await _populate(audit_store)
    await execute(migrated_url, "DELETE FROM exec_sessions WHERE id = :id", {"id": story.audit_id})

    report = await audit_store.verify()

    assert (report.ok, report.problem) == (False, "deleted")
    assert story.audit_id in report.detail


async def test_row_without_any_event_is_reported(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    await _populate(audit_store)
    await execute(
        migrated_url,
        "INSERT INTO conv_sessions (id, principal, target, reason, cwd, env, created_at,"
        " last_used_at) VALUES ('se_forged', 'local:x', 'a/b', '', '/', '{}',"
        " '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
    )

    report = await audit_store.verify()

    assert (report.ok, report.problem) == (False, "edited")
    assert "se_forged" in report.detail


async def test_truncated_tail_is_reported(audit_store: SqlAuditStore, migrated_url: str) -> None:
    story = await _populate(audit_store)
    await audit_store.verify()  # the checkpoint is at the head now
    await execute(migrated_url, "DELETE FROM audit_events WHERE seq > :n", {"n": story.events - 2})

    report = await audit_store.verify()

    assert (report.ok, report.problem) == (False, "truncated")
    assert report.first_bad_seq == story.events - 1
    assert report.rows_checked == story.events - 2


async def test_tail_cut_then_appended_to_is_still_reported_and_the_checkpoint_kept(
    audit_store: SqlAuditStore, migrated_url: str, checkpoint_path: Path
) -> None:
    story = await _populate(audit_store)
    await audit_store.aclose()
    before = checkpoint_path.read_bytes()
    await execute(migrated_url, "DELETE FROM audit_events WHERE seq > :n", {"n": story.events - 3})

    store = await _store(migrated_url, checkpoint_path)
    try:
        for _ in range(5):
            await store.record_intent(INTENT)
        report = await store.verify()
    finally:
        await store.aclose()

    assert (report.problem, report.first_bad_seq) == ("truncated", story.events)
    assert checkpoint_path.read_bytes() == before


async def test_forged_checkpoint_is_reported_and_kept(
    audit_store: SqlAuditStore, checkpoint_path: Path
) -> None:
    story = await _populate(audit_store)
    await audit_store.verify()
    doc = json.loads(checkpoint_path.read_text())
    doc["segments"][0][2] = story.events - 1
    checkpoint_path.write_text(json.dumps(doc))

    await audit_store.record_intent(INTENT)
    report = await audit_store.verify()

    assert (report.ok, report.problem) == (False, "checkpoint")
    assert json.loads(checkpoint_path.read_text()) == doc


async def test_checkpoint_signed_with_another_key_is_reported(
    audit_store: SqlAuditStore, migrated_url: str, checkpoint_path: Path
) -> None:
    await _populate(audit_store)
    await audit_store.aclose()

    store = await _store(migrated_url, checkpoint_path, key=Ed25519PrivateKey.generate())
    try:
        report = await store.verify()
    finally:
        await store.aclose()

    assert report.problem == "checkpoint"


async def test_checkpoint_claiming_more_events_than_exist_is_truncation(
    audit_store: SqlAuditStore, checkpoint_path: Path
) -> None:
    story = await _populate(audit_store)
    await audit_store.verify()
    forged = Segment(1, GENESIS_HASH, story.events + 10, "a" * 64)
    checkpoint_path.write_text(encode_checkpoint([forged], CHECKPOINT_KEY))

    report = await audit_store.verify()

    assert (report.problem, report.first_bad_seq) == ("truncated", story.events + 1)


async def test_missing_checkpoint_file_is_reported_once_the_log_has_events(
    audit_store: SqlAuditStore, checkpoint_path: Path
) -> None:
    await _populate(audit_store)
    await audit_store.verify()
    checkpoint_path.unlink()

    report = await audit_store.verify()

    assert (report.ok, report.problem) == (False, "checkpoint")


async def test_without_a_checkpoint_an_intact_chain_is_ok(migrated_url: str) -> None:
    store = await _store(migrated_url, None)
    try:
        await _populate(store)
        report = await store.verify()
    finally:
        await store.aclose()

    assert (report.ok, report.rows_checked) == (True, 7)


async def test_checkpoint_holds_the_head_after_close(
    audit_store: SqlAuditStore, checkpoint_path: Path, migrated_url: str
) -> None:
    story = await _populate(audit_store)
    await audit_store.aclose()

    checkpoint = read_checkpoint(checkpoint_path, CHECKPOINT_KEY.public_key())

    head = await scalar(migrated_url, "SELECT hash FROM audit_events WHERE seq = :s", {"s": 7})
    assert checkpoint is not None
    assert checkpoint.segments == (Segment(1, GENESIS_HASH, story.events, head),)


async def test_verify_walks_in_batches_and_finds_an_edit_in_a_later_batch(
    audit_store: SqlAuditStore, migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("policies.audit.verify.BATCH", 3)
    for _ in range(4):
        await _populate(audit_store)
    assert (await audit_store.verify()).ok

    await execute(migrated_url, "UPDATE audit_events SET subject = 'x' WHERE seq = 20")
    report = await audit_store.verify()

    assert (report.problem, report.first_bad_seq, report.rows_checked) == ("edited", 20, 19)
