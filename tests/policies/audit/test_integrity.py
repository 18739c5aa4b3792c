"""Attacker tests: someone with the database file, raw SQL, the checkpoint file, or
even the host's private key, against signed checkpoints, unvouched events and anchors."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.artifacts.anchors import local_anchors
from policies.audit import SqlAuditStore, open_audit_store
from policies.audit.anchors import AnchorPublisher
from policies.audit.chain import GENESIS_HASH, event_hash
from policies.audit.checkpoint import Segment, encode_checkpoint, read_checkpoint
from policies.audit.review import verify_log
from tests.conftest import CHECKPOINT_KEY
from tests.policies.audit.support import (
    INTENT,
    cut_and_resign,
    execute,
    record_anchored,
    scalar,
)

PUBLIC = CHECKPOINT_KEY.public_key()


async def _forge_event(url: str, seq: int) -> None:
    """Append event ``seq`` with raw SQL and a correctly recomputed hash."""
    prev = await scalar(url, "SELECT hash FROM audit_events WHERE seq = :s", {"s": seq - 1})
    now = dt.datetime.now(dt.UTC)
    payload = '{"note":"forged"}'
    digest = event_hash(prev, seq, "exec.note", "x", payload, now)
    await execute(
        url,
        "INSERT INTO audit_events (seq, kind, subject, payload, created_at, prev_hash, hash)"
        " VALUES (:seq, 'exec.note', 'x', :p, :c, :ph, :h)",
        {"seq": seq, "p": payload, "c": now, "ph": prev, "h": digest},
    )


async def test_rows_appended_with_raw_sql_are_unvouched_even_after_the_next_checkpoint(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    await audit_store.record_intent(INTENT)
    await audit_store.verify()
    await _forge_event(migrated_url, 2)
    await audit_store.record_intent(INTENT)  # event 3, checkpointed by this writer

    lenient = await audit_store.verify()
    strict = await audit_store.verify(strict=True)

    # The chain itself is intact (the forger recomputed the hashes) ...
    assert (lenient.ok, lenient.rows_checked, lenient.unvouched) == (True, 3, 1)
    # ... but only event 2 is not vouched for, and a strict check fails on it.
    assert (strict.ok, strict.problem, strict.first_bad_seq) == (False, "unvouched", 2)


async def test_rows_appended_past_the_last_checkpoint_fail_a_strict_check(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    await audit_store.record_intent(INTENT)
    assert (await audit_store.verify(strict=True)).ok  # control: the writer's own row
    await _forge_event(migrated_url, 2)

    report = await audit_store.verify(strict=True)

    assert (report.ok, report.problem, report.first_bad_seq, report.unvouched) == (
        False,
        "unvouched",
        2,
        1,
    )


async def test_the_log_verifies_with_the_public_key_alone(
    audit_store: SqlAuditStore, migrated_url: str, checkpoint_path: Path
) -> None:
    await audit_store.record_intent(INTENT)
    await audit_store.aclose()

    good = await verify_log(
        migrated_url, checkpoint_path=checkpoint_path, public_key=PUBLIC, strict=True
    )
    other = Ed25519PrivateKey.generate().public_key()
    bad = await verify_log(migrated_url, checkpoint_path=checkpoint_path, public_key=other)

    assert (good.ok, good.unvouched) == (True, 0)
    assert (bad.ok, bad.problem) == (False, "checkpoint")


async def test_checkpoint_forged_with_another_key_over_forged_rows_is_refused(
    audit_store: SqlAuditStore, migrated_url: str, checkpoint_path: Path
) -> None:
    await audit_store.record_intent(INTENT)
    await audit_store.aclose()
    await _forge_event(migrated_url, 2)
    head = await scalar(migrated_url, "SELECT hash FROM audit_events WHERE seq = 2")
    mallory = Ed25519PrivateKey.generate()
    checkpoint_path.write_text(encode_checkpoint([Segment(1, GENESIS_HASH, 2, head)], mallory))

    report = await verify_log(migrated_url, checkpoint_path=checkpoint_path, public_key=PUBLIC)
    forger_view = await verify_log(
        migrated_url, checkpoint_path=checkpoint_path, public_key=mallory.public_key()
    )

    assert (report.ok, report.problem) == (False, "checkpoint")
    assert forger_view.ok  # the forgery is only caught because the key is pinned


async def test_an_hmac_checkpoint_of_an_older_release_is_refused_not_trusted(
    audit_store: SqlAuditStore, checkpoint_path: Path
) -> None:
    await audit_store.record_intent(INTENT)
    await audit_store.verify()  # the first checkpoint is on disk
    legacy = {"version": 1, "seq": 1, "hash": "a" * 64, "rows": 1, "mac": "b" * 64}
    checkpoint_path.write_text(json.dumps(legacy))

    await audit_store.record_intent(INTENT)
    report = await audit_store.verify()

    assert (report.ok, report.problem) == (False, "checkpoint")
    assert json.loads(checkpoint_path.read_text()) == legacy  # kept, never overwritten


async def test_a_rebuilt_database_is_never_signed_over_the_old_checkpoint(
    audit_store: SqlAuditStore, migrated_url: str, checkpoint_path: Path
) -> None:
    for _ in range(3):
        await audit_store.record_intent(INTENT)
    await audit_store.aclose()
    before = checkpoint_path.read_text()
    await execute(migrated_url, "DELETE FROM audit_events")
    await execute(migrated_url, "DELETE FROM exec_sessions")

    store = await open_audit_store(
        migrated_url, checkpoint_path=checkpoint_path, checkpoint_key=CHECKPOINT_KEY
    )
    try:
        await store.record_intent(INTENT)  # a new event 1 that forks from the signed one
        report = await store.verify()
    finally:
        await store.aclose()

    # The signed run 1..3 ends past the rebuilt log's head.
    assert (report.ok, report.problem, report.first_bad_seq) == (False, "truncated", 2)
    assert checkpoint_path.read_text() == before


async def test_anchors_catch_history_rewritten_by_someone_holding_the_private_key(
    migrated_url: str, checkpoint_path: Path, tmp_path: Path
) -> None:
    anchors = local_anchors(tmp_path / "artifacts")
    await record_anchored(migrated_url, checkpoint_path, CHECKPOINT_KEY, anchors)
    assert len(await anchors.list_anchors()) >= 1
    await cut_and_resign(migrated_url, checkpoint_path, CHECKPOINT_KEY)

    local = await verify_log(migrated_url, checkpoint_path=checkpoint_path, public_key=PUBLIC)
    anchored = await verify_log(
        migrated_url, checkpoint_path=checkpoint_path, public_key=PUBLIC, anchors=anchors
    )

    assert local.problem != "anchor" and local.first_bad_seq is None  # fooled locally ...
    assert (anchored.ok, anchored.problem, anchored.first_bad_seq) == (False, "anchor", 3)


async def test_an_anchor_signed_with_another_key_is_reported(
    audit_store: SqlAuditStore, migrated_url: str, checkpoint_path: Path, tmp_path: Path
) -> None:
    await audit_store.record_intent(INTENT)
    await audit_store.aclose()
    anchors = local_anchors(tmp_path / "artifacts")
    mallory = Ed25519PrivateKey.generate()
    forged = encode_checkpoint([Segment(1, GENESIS_HASH, 1, "c" * 64)], mallory)
    await AnchorPublisher(anchors)(1, forged)

    report = await verify_log(
        migrated_url, checkpoint_path=checkpoint_path, public_key=PUBLIC, anchors=anchors
    )

    assert (report.ok, report.problem) == (False, "anchor")


async def test_verify_with_anchors_fails_when_none_were_published(
    audit_store: SqlAuditStore, migrated_url: str, checkpoint_path: Path, tmp_path: Path
) -> None:
    await audit_store.record_intent(INTENT)
    await audit_store.aclose()
    assert read_checkpoint(checkpoint_path, PUBLIC) is not None  # the local check has one

    report = await verify_log(
        migrated_url,
        checkpoint_path=checkpoint_path,
        public_key=PUBLIC,
        anchors=local_anchors(tmp_path / "empty"),
    )

    assert (report.ok, report.problem) == (False, "anchor")
