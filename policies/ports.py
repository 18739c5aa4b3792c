"""Ports: the interfaces the service talks through (audit store, instance providers,
output sinks). Implementations live in ``policies.audit``, ``policies.instances`` and
``policies.artifacts``; the service and the surfaces depend only on these protocols."""

from __future__ import annotations

import builtins
import datetime as dt
import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from policies.types import (
    ApprovalId,
    AuditId,
    InstanceInfo,
    Limits,
    RunResult,
    SessionId,
    Stream,
    Target,
)

# --------------------------------------------------------------------------- providers

OutputCallback = Callable[[Stream, bytes], Awaitable[None]]


class InstanceProvider(Protocol):
    """Runs argv on live instances of one configured provider."""

    name: str

    async def list_instances(
        self, function: str, qualifier: str | None = None
    ) -> list[InstanceInfo]:
        """Live instances of ``function``.

        Raises: ProviderUnavailable, ProviderAuthError, ProviderAccessDenied.
        """
        ...

    async def exec(
        self,
        target: Target,
        argv: Sequence[str],
        *,
        limits: Limits,
        on_output: OutputCallback,
        stdin: AsyncIterator[bytes] | None = None,
    ) -> RunResult:
        """Run argv on the instance, streaming output through ``on_output``.

        Timeouts are reported in the RunResult (``timed_out`` / ``idle_timed_out``) after
        the whole process tree was killed; they are not raised.

        Raises: InstanceNotRunning, ProviderAuthError, ProviderAccessDenied,
        ProviderUnavailable.
        """
        ...

    async def aclose(self) -> None: ...


# --------------------------------------------------------------------------- audit


class ExecStatus(enum.StrEnum):
    RUNNING = "running"  # intent written, not finished
    COMPLETED = "completed"  # the command ran to an exit code
    TIMEOUT = "timeout"
    DENIED = "denied"  # refused by policy / command parsing; nothing ran
    PENDING_APPROVAL = "pending_approval"
    APPROVAL_DENIED = "approval_denied"
    APPROVAL_EXPIRED = "approval_expired"
    APPROVAL_WITHDRAWN = "approval_withdrawn"  # the requester withdrew it; nothing ran
    FAILED = "failed"  # could not run (instance error, provider error)
    INTERRUPTED = "interrupted"  # the process died mid-exec; marked on next start
    CANCELLED = "cancelled"  # the request was cancelled mid-exec; the command was stopped


@dataclass(frozen=True, slots=True)
class ExecIntent:
    """Written BEFORE anything runs."""

    principal: str
    surface: str
    target: str
    provider: str
    function: str
    instance: str
    argv: tuple[str, ...]
    command_text: str | None
    reason: str
    effect: str  # allow | deny | approve
    rule_id: str | None
    decision_reason: str
    session_id: SessionId | None = None
    approval_id: ApprovalId | None = None
    request_key: str | None = None
    status: ExecStatus = ExecStatus.RUNNING


@dataclass(frozen=True, slots=True)
class RateCheck:
    """A rate limit applied when an intent is written: when the intent's principal
    already has ``limit`` requests under its rule since ``since`` that were not refused,
    ``refusal`` is recorded instead. Counting and writing happen in one transaction, so
    concurrent requests (from any process) cannot overrun the limit together."""

    since: dt.datetime
    limit: int
    refusal: ExecIntent


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """A stored artifact: what the audit log records about it."""

    key: str
    size: int
    sha256: str
    content_type: str


@dataclass(frozen=True, slots=True)
class ExecOutcome:
    status: ExecStatus
    exit_code: int | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    output_sha256: str | None = None
    artifact_keys: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    error: str | None = None
    # Scrubbed and truncated to the surface's inline limit: safe to show again.
    stdout_text: str = ""
    stderr_text: str = ""
    artifacts: tuple[ArtifactInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class ExecRecord:
    """One exec session as stored (intent plus outcome when it exists)."""

    audit_id: AuditId
    created_at: dt.datetime
    intent: ExecIntent
    outcome: ExecOutcome | None


class ApprovalState(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    EXECUTED = "executed"
    WITHDRAWN = "withdrawn"  # by its requester, while pending


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    approval_id: ApprovalId
    audit_id: AuditId  # the exec intent that asked for approval
    request_hash: str  # sha256 over (target, argv, requester)
    requester: str
    target: str
    argv: tuple[str, ...]
    reason: str
    rule_id: str
    approver_roles: tuple[str, ...]
    threshold: int
    created_at: dt.datetime
    expires_at: dt.datetime
    state: ApprovalState
    approvals: tuple[str, ...] = ()  # distinct principals who approved, in order
    denied_by: str | None = None
    surface: str = "cli"
    # Opaque JSON-able context from the surface (e.g. Slack channel/thread to answer in).
    context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    session_id: SessionId
    principal: str
    target: str
    reason: str
    created_at: dt.datetime
    last_used_at: dt.datetime
    ended_at: dt.datetime | None
    cwd: str
    env: dict[str, str]
    end_reason: str | None = None
    anchor: str | None = None  # where a surface shows it, e.g. slack:<channel>:<thread>


@dataclass(frozen=True, slots=True)
class AuditFilter:
    principal: str | None = None
    target: str | None = None
    function: str | None = None
    effect: str | None = None
    status: str | None = None
    session_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    rows_checked: int
    first_bad_seq: int | None = None
    problem: str | None = None  # "edited" | "deleted" | "truncated" | "checkpoint" ...
    detail: str = ""
    unvouched: int = 0  # events no signed checkpoint covers


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """What an approval request is created from: the exec ``audit_id`` that asked, bound
    to ``request_hash`` over (target, argv, requester)."""

    audit_id: AuditId
    request_hash: str
    requester: str
    target: str
    argv: tuple[str, ...]
    reason: str
    rule_id: str
    approver_roles: tuple[str, ...]
    threshold: int
    ttl_seconds: float
    surface: str
    context: dict[str, str] = field(default_factory=dict)


class ExecLog(Protocol):
    """The exec records of the audit log. Every method may raise AuditUnavailable."""

    async def record_intent(self, intent: ExecIntent) -> AuditId: ...

    async def record_rated_intent(
        self, intent: ExecIntent, rate: RateCheck
    ) -> tuple[AuditId, bool]:
        """Write ``intent``, or ``rate.refusal`` when the rate is used up; the bool says
        the refusal was written."""
        ...

    async def record_outcome(self, audit_id: AuditId, outcome: ExecOutcome) -> None:
        """Commit ``outcome`` (visible to every reader once this returns).

        Raises: ExecNotFound."""
        ...

    async def get_exec(self, audit_id: AuditId) -> ExecRecord:
        """Raises: ExecNotFound."""
        ...

    async def list_execs(self, flt: AuditFilter) -> list[ExecRecord]: ...

    async def find_by_request_key(self, request_key: str) -> AuditId | None: ...

    async def mark_interrupted(self) -> int:
        """Mark RUNNING intents left by a dead process as INTERRUPTED; return how many."""
        ...


class ApprovalLog(Protocol):
    """The approval requests and their votes. Every method may raise AuditUnavailable."""

    async def create_approval(self, request: ApprovalRequest) -> ApprovalRecord:
        """Raises: ExecNotFound, ValueError (threshold < 1, TTL <= 0)."""
        ...

    async def get_approval(self, approval_id: ApprovalId) -> ApprovalRecord:
        """Raises: ApprovalNotFound."""
        ...

    async def list_approvals(self, state: ApprovalState | None = None) -> list[ApprovalRecord]: ...

    async def add_approval_vote(
        self, approval_id: ApprovalId, approver: str, approve: bool
    ) -> ApprovalRecord:
        """Record one approver's vote atomically and return the updated record.

        The state moves to APPROVED once ``threshold`` distinct approvers approved, to
        DENIED on any deny. A repeated vote by the same approver is not counted twice.

        Raises: ApprovalNotFound, ApprovalAlreadyDecided, ApprovalExpired.
        """
        ...

    async def claim_approved(self, approval_id: ApprovalId) -> ApprovalRecord | None:
        """Atomically move APPROVED -> EXECUTED; None when someone else claimed it."""
        ...

    async def withdraw_approval(self, approval_id: ApprovalId, requester: str) -> ApprovalRecord:
        """Atomically move PENDING -> WITHDRAWN for its requester.

        Raises: ApprovalNotFound (also for anyone but the requester),
        ApprovalAlreadyDecided, ApprovalExpired.
        """
        ...

    async def expire_approvals(self, now: dt.datetime | None = None) -> int: ...


class SessionLog(Protocol):
    """Conversational sessions. Every method may raise AuditUnavailable."""

    async def create_session(
        self, *, principal: str, target: str, reason: str, cwd: str
    ) -> SessionRecord: ...

    async def get_session(self, session_id: SessionId) -> SessionRecord:
        """Raises: SessionNotFound."""
        ...

    async def update_session(
        self,
        session_id: SessionId,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        anchor: str | None = None,
    ) -> SessionRecord:
        """Raises: SessionNotFound."""
        ...

    async def find_session(self, anchor: str) -> SessionRecord | None:
        """The newest session shown at ``anchor``, if any."""
        ...

    async def end_session(self, session_id: SessionId, reason: str) -> SessionRecord:
        """Raises: SessionNotFound."""
        ...


class AuditStore(ExecLog, ApprovalLog, SessionLog, Protocol):
    """The append-only, hash-chained audit log: execs, approvals and sessions in one
    chain. Every method may raise AuditUnavailable."""

    async def verify(self) -> VerifyReport: ...

    async def aclose(self) -> None: ...


# --------------------------------------------------------------------------- artifacts


class ArtifactStore(Protocol):
    """Object storage for large output and collected files (local, S3, OSS).

    Uploads stream: nothing is held whole in memory. A failed or cut upload leaves
    nothing under ``key`` that could be taken for the whole artifact.
    """

    name: str

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        max_bytes: int | None = None,
    ) -> ArtifactInfo:
        """Raises: ArtifactError (also when more than ``max_bytes`` arrive)."""
        ...

    async def put_file(self, key: str, path: Path, *, content_type: str) -> ArtifactInfo:
        """Raises: ArtifactError."""
        ...

    async def link(self, key: str, *, ttl_seconds: float | None = None) -> str:
        """An expiring URL to fetch the artifact. Raises: ArtifactError."""
        ...

    async def read(self, key: str, *, max_bytes: int) -> bytes:
        """The bytes stored under ``key``; never more than ``max_bytes`` are held.

        Raises: ArtifactNotFound (nothing under ``key``); ArtifactTooLarge (more than
        ``max_bytes`` stored); ArtifactError.
        """
        ...

    async def list(self, prefix: str) -> builtins.list[str]:
        """The keys that start with ``prefix``, sorted. Raises: ArtifactError."""
        ...

    async def aclose(self) -> None: ...
