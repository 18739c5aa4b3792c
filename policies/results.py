"""What the service hands back to surfaces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from policies.ports import ApprovalRecord, ExecStatus
from policies.types import ApprovalId, AuditId, Decision, Effect


@dataclass(frozen=True, slots=True)
class Explanation:
    """A dry-run decision: nothing runs, nothing is recorded."""

    decision: Decision
    target: str
    argv: tuple[str, ...]
    stages: tuple[tuple[str, ...], ...]
    error_code: str | None = None  # set when the command text itself was refused

    def to_dict(self) -> dict[str, Any]:
        return {
            "effect": self.decision.effect.value,
            "rule": self.decision.rule_id,
            "reason": self.decision.reason,
            "target": self.target,
            "stages": [list(s) for s in self.stages],
            "code": self.error_code,
        }


@dataclass(frozen=True, slots=True)
class ExecResult:
    """The outcome of one exec request, fit for any surface (already scrubbed)."""

    effect: Effect
    rule: str | None
    reason: str
    audit_id: AuditId | None
    status: ExecStatus
    target: str
    argv: tuple[str, ...] = ()
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    stdout_omitted: int = 0
    stderr_omitted: int = 0
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    duration_ms: int | None = None
    approval_id: ApprovalId | None = None
    approval_expires_at: str | None = None
    links: dict[str, str] = field(default_factory=dict)
    error_code: str | None = None
    error: str | None = None  # a safe message

    @property
    def ran(self) -> bool:
        return self.status in (ExecStatus.COMPLETED, ExecStatus.TIMEOUT)

    def to_dict(self) -> dict[str, Any]:
        return {
            "effect": self.effect.value,
            "rule": self.rule,
            "reason": self.reason,
            "status": self.status.value,
            "target": self.target,
            "argv": list(self.argv),
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "truncated": self.truncated,
            "omitted": {"stdout": self.stdout_omitted, "stderr": self.stderr_omitted},
            "bytes": {"stdout": self.stdout_bytes, "stderr": self.stderr_bytes},
            "duration_ms": self.duration_ms,
            "audit_id": self.audit_id,
            "approval_id": self.approval_id,
            "approval_expires_at": self.approval_expires_at,
            "links": dict(self.links),
            "error": {"code": self.error_code, "message": self.error} if self.error_code else None,
        }


@dataclass(frozen=True, slots=True)
class VoteResult:
    """What an approver's vote did: still pending, denied, or approved and run."""

    approval: ApprovalRecord
    result: ExecResult | None = None
