"""Conversions between the port's records and table rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from policies.ports import (
    ApprovalRecord,
    ApprovalState,
    ArtifactInfo,
    ExecIntent,
    ExecOutcome,
    ExecRecord,
    ExecStatus,
    SessionRecord,
)
from policies.types import ApprovalId, AuditId, SessionId

Row = sa.Row[*tuple[Any, ...]]


def intent_values(intent: ExecIntent) -> dict[str, Any]:
    return {
        "principal": intent.principal,
        "surface": intent.surface,
        "target": intent.target,
        "provider": intent.provider,
        "function": intent.function,
        "instance": intent.instance,
        "argv": list(intent.argv),
        "command_text": intent.command_text,
        "reason": intent.reason,
        "effect": intent.effect,
        "rule_id": intent.rule_id,
        "decision_reason": intent.decision_reason,
        "session_id": intent.session_id,
        "approval_id": intent.approval_id,
        "request_key": intent.request_key,
        "status": ExecStatus(intent.status).value,
    }


def outcome_values(outcome: ExecOutcome) -> dict[str, Any]:
    return {
        "status": ExecStatus(outcome.status).value,
        "exit_code": outcome.exit_code,
        "started_at": outcome.started_at,
        "ended_at": outcome.ended_at,
        "stdout_bytes": outcome.stdout_bytes,
        "stderr_bytes": outcome.stderr_bytes,
        "output_sha256": outcome.output_sha256,
        "artifact_keys": list(outcome.artifact_keys),
        "approvers": list(outcome.approvers),
        "error": outcome.error,
        "stdout_text": outcome.stdout_text,
        "stderr_text": outcome.stderr_text,
        "artifacts": [
            {"key": a.key, "size": a.size, "sha256": a.sha256, "content_type": a.content_type}
            for a in outcome.artifacts
        ],
    }


def exec_record(row: Row) -> ExecRecord:
    status = ExecStatus(row.status)
    intent = ExecIntent(
        principal=row.principal,
        surface=row.surface,
        target=row.target,
        provider=row.provider,
        function=row.function,
        instance=row.instance,
        argv=tuple(row.argv),
        command_text=row.command_text,
        reason=row.reason,
        effect=row.effect,
        rule_id=row.rule_id,
        decision_reason=row.decision_reason,
        session_id=None if row.session_id is None else SessionId(row.session_id),
        approval_id=None if row.approval_id is None else ApprovalId(row.approval_id),
        request_key=row.request_key,
        status=status,
    )
    outcome = None
    if row.outcome_at is not None:
        outcome = ExecOutcome(
            status=status,
            exit_code=row.exit_code,
            started_at=row.started_at,
            ended_at=row.ended_at,
            stdout_bytes=row.stdout_bytes or 0,
            stderr_bytes=row.stderr_bytes or 0,
            output_sha256=row.output_sha256,
            artifact_keys=tuple(row.artifact_keys or ()),
            approvers=tuple(row.approvers or ()),
            error=row.error,
            stdout_text=row.stdout_text or "",
            stderr_text=row.stderr_text or "",
            artifacts=tuple(ArtifactInfo(**a) for a in row.artifacts or ()),
        )
    return ExecRecord(AuditId(row.id), row.created_at, intent, outcome)


def approval_record(row: Row, votes: Sequence[Row]) -> ApprovalRecord:
    """``votes`` are the approval's vote rows in the order they were cast."""
    return ApprovalRecord(
        approval_id=ApprovalId(row.id),
        audit_id=AuditId(row.audit_id),
        request_hash=row.request_hash,
        requester=row.requester,
        target=row.target,
        argv=tuple(row.argv),
        reason=row.reason,
        rule_id=row.rule_id,
        approver_roles=tuple(row.approver_roles),
        threshold=row.threshold,
        created_at=row.created_at,
        expires_at=row.expires_at,
        state=ApprovalState(row.state),
        approvals=tuple(v.approver for v in votes if v.approve),
        denied_by=row.denied_by,
        surface=row.surface,
        context={str(k): str(v) for k, v in (row.context or {}).items()},
    )


def session_record(row: Row) -> SessionRecord:
    return SessionRecord(
        session_id=SessionId(row.id),
        principal=row.principal,
        target=row.target,
        reason=row.reason,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        ended_at=row.ended_at,
        cwd=row.cwd,
        env={str(k): str(v) for k, v in (row.env or {}).items()},
        end_reason=row.end_reason,
        anchor=row.anchor,
    )
