"""What the service hands back to surfaces."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from policies.ports import ApprovalRecord, ArtifactInfo, ExecRecord, ExecStatus
from policies.types import ApprovalId, AuditId, Decision, Effect, Stream

# Where a surface wants scrubbed output streamed while a command runs.
TextSink = Callable[[Stream, str], Awaitable[None]]
# Inline output kept in a result when the surface names no limit (the MCP default).
DEFAULT_INLINE_LIMIT = 16 * 1024


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
    # Raw bytes received past the rule's max_output: counted, never kept or shown.
    dropped_bytes: int = 0
    duration_ms: int | None = None
    approval_id: ApprovalId | None = None
    approval_expires_at: str | None = None
    # Who approved it, for a command that ran after approval.
    approvers: tuple[str, ...] = ()
    links: dict[str, str] = field(default_factory=dict)
    error_code: str | None = None
    error: str | None = None  # a safe message
    # Set for a stream that printed bytes that are not text (NUL, invalid UTF-8): its
    # text view replaced or dropped them.
    stdout_binary: bool = False
    stderr_binary: bool = False

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
            "binary": {"stdout": self.stdout_binary, "stderr": self.stderr_binary},
            "dropped_bytes": self.dropped_bytes,
            "duration_ms": self.duration_ms,
            "audit_id": self.audit_id,
            "approval_id": self.approval_id,
            "approval_expires_at": self.approval_expires_at,
            "approvers": list(self.approvers),
            "links": dict(self.links),
            "error": {"code": self.error_code, "message": self.error} if self.error_code else None,
        }


@dataclass(frozen=True, slots=True)
class AuditSearch:
    """An audit search as the service ran it: ``narrowed_to`` is the principal the
    filter was narrowed to, when the asker may see only their own records and asked
    for more (someone else's, or everyone's); None when it ran as asked."""

    records: list[ExecRecord]
    narrowed_to: str | None = None


@dataclass(frozen=True, slots=True)
class VoteResult:
    """What an approver's vote did: still pending, denied, or approved and run."""

    approval: ApprovalRecord
    result: ExecResult | None = None


@dataclass(frozen=True, slots=True)
class CollectResult:
    """The outcome of one collect request: a file fetched from an instance as an artifact.

    ``ok`` once the whole file is stored: then ``link`` (expiring at ``link_expires_at``)
    and ``artifact`` (key, size, sha256, content type, as recorded in the audit log) are
    set. Denials, pending approvals and refusals on the instance (``error_code``:
    ``path_traversal``, ``bad_path``, ``not_found``, ``symlink_escape``, ``special_file``,
    ``not_regular``, ``unreadable``, ``too_large``, ``changed``, ``transfer_failed``, or
    the exec codes ``denied``, ``rate_limited``, ``unknown_principal``, ``timeout``) come
    back as results too, after they were recorded.
    """

    effect: Effect
    rule: str | None
    reason: str
    audit_id: AuditId | None
    status: ExecStatus
    target: str
    path: str
    resolved_path: str | None = None
    artifact: ArtifactInfo | None = None
    link: str | None = None
    link_expires_at: str | None = None
    max_bytes: int | None = None
    duration_ms: int | None = None
    approval_id: ApprovalId | None = None
    approval_expires_at: str | None = None
    error_code: str | None = None
    error: str | None = None  # a safe message

    @property
    def ok(self) -> bool:
        return self.artifact is not None and self.link is not None

    @classmethod
    def of(cls, base: ExecResult, path: str, max_bytes: int | None) -> CollectResult:
        """The collect of ``path`` recorded as ``base`` (decision, audit id, status)."""
        return cls(
            effect=base.effect,
            rule=base.rule,
            reason=base.reason,
            audit_id=base.audit_id,
            status=base.status,
            target=base.target,
            path=path,
            max_bytes=max_bytes,
            approval_id=base.approval_id,
        )

    def to_exec_result(self, argv: tuple[str, ...]) -> ExecResult:
        """This collect as the ExecResult approvals hand back (``vote``,
        ``approval_result``): the link is ``links["artifact"]``, exit code 0 when stored."""
        info = self.artifact
        stored = f"collected {self.resolved_path or self.path}: {info.size} bytes, " if info else ""
        return ExecResult(
            effect=self.effect,
            rule=self.rule,
            reason=self.reason,
            audit_id=self.audit_id,
            status=self.status,
            target=self.target,
            argv=argv,
            exit_code=0 if self.ok else None,
            stdout=f"{stored}sha256 {info.sha256}\n" if info else "",
            duration_ms=self.duration_ms,
            approval_id=self.approval_id,
            approval_expires_at=self.approval_expires_at,
            links={"artifact": self.link} if self.link else {},
            error_code=self.error_code,
            error=self.error,
        )

    def to_dict(self) -> dict[str, Any]:
        artifact = self.artifact
        return {
            "effect": self.effect.value,
            "rule": self.rule,
            "reason": self.reason,
            "status": self.status.value,
            "target": self.target,
            "path": self.path,
            "resolved_path": self.resolved_path,
            "link": self.link,
            "link_expires_at": self.link_expires_at,
            "artifact": None
            if artifact is None
            else {
                "key": artifact.key,
                "size": artifact.size,
                "sha256": artifact.sha256,
                "content_type": artifact.content_type,
            },
            "max_bytes": self.max_bytes,
            "duration_ms": self.duration_ms,
            "audit_id": self.audit_id,
            "approval_id": self.approval_id,
            "approval_expires_at": self.approval_expires_at,
            "error": {"code": self.error_code, "message": self.error} if self.error_code else None,
        }
