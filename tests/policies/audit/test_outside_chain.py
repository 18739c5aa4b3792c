"""Attacker tests: someone with write access to the database (no signing key) adds rows
backed by events outside the chain ``verify`` walks (sequence numbers below 1)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from policies.audit import SqlAuditStore
from policies.audit.chain import GENESIS_HASH, canonical, event_hash, json_value
from policies.audit.db_engine import create_engine
from policies.audit.records import intent_values
from policies.audit.tables import approval_votes, approvals, audit_events, exec_sessions
from policies.ports import AuditFilter
from policies.types import ApprovalId, AuditId
from tests.policies.audit.support import INTENT, scalar

FAKE_EXEC = "ex_forged000000000000000000000"
FAKE_APPROVAL = "ap_forged000000000000000000000"


def _event(seq: int, kind: str, subject: str, values: Mapping[str, Any]) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    payload = canonical({k: json_value(v) for k, v in values.items()})
    digest = event_hash(GENESIS_HASH, seq, kind, subject, payload, now)
    return {
        "seq": seq,
        "kind": kind,
        "subject": subject,
        "payload": payload,
        "created_at": now,
        "prev_hash": GENESIS_HASH,
        "hash": digest,
    }


async def _tamper(url: str, writes: Sequence[tuple[sa.Table, dict[str, Any]]]) -> None:
    """Insert rows the way an attacker with full database rights would: past the
    ``seq > 0`` check constraint (dropped on PostgreSQL, ignored on SQLite)."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                await conn.exec_driver_sql("PRAGMA ignore_check_constraints = ON")
            else:
                await conn.exec_driver_sql(
                    "ALTER TABLE audit_events DROP CONSTRAINT IF EXISTS "
                    "ck_audit_events_seq_positive"
                )
            for table, values in writes:
                await conn.execute(table.insert(), values)
    finally:
        await engine.dispose()


def _fake_exec(seq: int) -> list[tuple[sa.Table, dict[str, Any]]]:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    row = {"id": FAKE_EXEC, "created_at": now, **intent_values(INTENT), "owner": None}
    full = {c.name: row.get(c.name) for c in exec_sessions.columns}
    return [
        (exec_sessions, full),
        (audit_events, _event(seq, "exec.intent", FAKE_EXEC, full)),
    ]


async def test_an_exec_row_backed_by_an_event_at_seq_minus_one_fails_verify(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    await audit_store.record_intent(INTENT)
    assert (await audit_store.verify(strict=True)).ok  # control: the real log verifies
    await _tamper(migrated_url, _fake_exec(-1))

    shown = await audit_store.get_exec(AuditId(FAKE_EXEC))  # the forgery is visible ...
    listed = await audit_store.list_execs(AuditFilter())
    lenient = await audit_store.verify()
    strict = await audit_store.verify(strict=True)

    assert shown.audit_id == FAKE_EXEC and len(listed) == 2
    assert (lenient.ok, lenient.problem, lenient.first_bad_seq) == (False, "outside", -1)
    assert (strict.ok, strict.problem) == (False, "outside")


async def test_an_event_at_seq_zero_with_no_row_fails_verify(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    await audit_store.record_intent(INTENT)
    assert (await audit_store.verify(strict=True)).ok
    await _tamper(migrated_url, [(audit_events, _event(0, "exec.note", "x", {"a": 1}))])

    report = await audit_store.verify(strict=True)

    assert await scalar(migrated_url, "SELECT count(*) FROM audit_events") == 2
    assert (report.ok, report.problem, report.first_bad_seq) == (False, "outside", 0)


async def test_a_fake_approval_and_vote_backed_by_events_below_one_fail_verify(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    await audit_store.record_intent(INTENT)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    approval = {
        "id": FAKE_APPROVAL,
        "audit_id": FAKE_EXEC,
        "request_hash": "0" * 64,
        "requester": "local:mallory",
        "target": INTENT.target,
        "argv": list(INTENT.argv),
        "reason": "forged",
        "rule_id": "captures",
        "approver_roles": ["sre"],
        "threshold": 1,
        "created_at": now,
        "expires_at": now + dt.timedelta(hours=1),
        "state": "approved",
        "denied_by": None,
        "decided_at": now,
        "surface": "cli",
        "context": {},
    }
    vote = {"approval_id": FAKE_APPROVAL, "approver": "local:bob", "approve": True, "voted_at": now}
    await _tamper(
        migrated_url,
        [
            *_fake_exec(-3),
            (approvals, approval),
            (audit_events, _event(-2, "approval.created", FAKE_APPROVAL, approval)),
            (approval_votes, vote),
            (audit_events, _event(-1, "approval.vote", FAKE_APPROVAL, vote)),
        ],
    )

    shown = await audit_store.get_approval(ApprovalId(FAKE_APPROVAL))
    report = await audit_store.verify(strict=True)

    assert shown.approvals == ("local:bob",)  # the forged vote is visible ...
    assert (report.ok, report.problem, report.first_bad_seq) == (False, "outside", -3)


async def test_the_database_refuses_events_numbered_below_one(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    engine = create_engine(migrated_url)
    try:
        async with engine.begin() as conn:  # control: the same insert at seq 1 works
            await conn.execute(audit_events.insert(), _event(1, "exec.note", "x", {}))
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(audit_events.insert(), _event(0, "exec.note", "x", {}))
    finally:
        await engine.dispose()
