"""ExecGate's one exception tree.

Every error carries a stable ``code`` (what adapters and tests branch on) and a
``safe_message`` that may be shown to a user, a chat channel or a model. Details that
must not leave the process (exception text from drivers, hostnames, SQL) go to the log
together with the audit id, never into ``safe_message``.

    ExecGateError
    ├── ConfigError                 bad or missing configuration
    ├── PolicyError
    │   └── PolicyLoadError         a policy file failed validation (file, line, reason)
    ├── CommandRejected             command text refused before matching (shell syntax,
    │                               control characters, over-long input, ...)
    ├── UnknownPrincipal            the surface could not name a known principal
    ├── AccessDenied                the policy denied the request (carries the decision)
    ├── RateLimited                 the per-principal rate of a rule was exceeded
    ├── ApprovalError
    │   ├── ApprovalNotFound
    │   ├── ApprovalExpired
    │   ├── ApprovalAlreadyDecided
    │   ├── SelfApprovalRefused
    │   └── NotAnApprover
    ├── SessionError
    │   ├── SessionNotFound
    │   └── SessionEnded            idle timeout, ended by its owner, instance released
    ├── ExecNotFound                no exec record with that audit id (or not yours)
    ├── DuplicateRequest            a delivery key already recorded (by any replica)
    ├── AuditUnavailable            the audit store cannot record: nothing runs
    ├── AuditIntegrityError         the audit chain failed verification
    ├── TargetError                 a target string could not be parsed
    ├── InstanceError
    │   ├── UnknownProvider
    │   ├── InstanceNotRunning      released or never existed
    │   ├── ProviderAuthError       signature mismatch, bad credentials
    │   ├── ProviderAccessDenied    credentials valid but not allowed
    │   └── ProviderUnavailable     network / protocol failure talking to the provider
    ├── ExecTimeout                 the command hit its timeout or idle timeout
    └── ArtifactError               the artifact store failed or a link is bad/expired
        ├── ArtifactNotFound        no such artifact, or not one the caller may read
        └── ArtifactTooLarge        larger than a surface may read inline
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.StrEnum):
    """Codes of results that are not exceptions (``ExecResult.error_code``, an audit
    outcome's ``error``) besides the codes of the exceptions below."""

    DENIED = "denied"
    RATE_LIMITED = "rate_limited"
    UNKNOWN_PRINCIPAL = "unknown_principal"
    DUPLICATE = "duplicate"
    TIMEOUT = "timeout"
    EXEC_ERROR = "exec_error"
    INTERNAL = "internal"
    CANCELLED = "cancelled"
    POLICY_CHANGED = "policy_changed"
    LINK_UNAVAILABLE = "link_unavailable"


class ExecGateError(Exception):
    """Base of every ExecGate error.

    ``code`` is stable and machine readable; ``safe_message`` is fit for any surface.
    """

    code: str = "error"
    default_message: str = "ExecGate could not complete the request"

    def __init__(self, safe_message: str | None = None, **fields: Any) -> None:
        self.safe_message = safe_message or self.default_message
        self.fields: dict[str, Any] = dict(fields)
        self.audit_id: str | None = fields.get("audit_id")
        super().__init__(self.safe_message)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.safe_message}
        for key, value in self.fields.items():
            if isinstance(value, str | int | float | bool) or value is None:
                out[key] = value
        return out


class ConfigError(ExecGateError):
    code = "config_error"
    default_message = "ExecGate's configuration is invalid"


class PolicyError(ExecGateError):
    code = "policy_error"
    default_message = "the policy could not be evaluated"


class PolicyLoadError(PolicyError):
    """A policy file failed validation; the whole file is rejected."""

    code = "policy_invalid"

    def __init__(self, file: str, line: int | None, reason: str) -> None:
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"policy {where}: {reason}", file=file, line=line, reason=reason)
        self.file = file
        self.line = line
        self.reason = reason


class CommandRejected(ExecGateError):
    """The command text was refused before any rule was consulted."""

    code = "command_rejected"
    default_message = "the command was refused"

    def __init__(self, reason: str, *, kind: str = "invalid") -> None:
        super().__init__(reason, kind=kind)
        self.kind = kind


class UnknownPrincipal(ExecGateError):
    code = "unknown_principal"
    default_message = "you are not a known ExecGate user; ask an admin to add you to the policy"


class AccessDenied(ExecGateError):
    code = "denied"
    default_message = "the policy does not allow this command"


class RateLimited(ExecGateError):
    code = "rate_limited"
    default_message = "too many commands; wait a moment and try again"


class ApprovalError(ExecGateError):
    code = "approval_error"


class ApprovalNotFound(ApprovalError):
    code = "approval_not_found"
    default_message = "no such approval request"


class ApprovalExpired(ApprovalError):
    code = "approval_expired"
    default_message = "the approval request has expired; run the command again to ask anew"


class ApprovalAlreadyDecided(ApprovalError):
    code = "approval_decided"
    default_message = "the approval request was already decided"


class SelfApprovalRefused(ApprovalError):
    code = "self_approval"
    default_message = "you cannot approve your own request"


class NotAnApprover(ApprovalError):
    code = "not_an_approver"
    default_message = "you are not an approver for this request"


class SessionError(ExecGateError):
    code = "session_error"
    default_message = "the session cannot be used"


class SessionNotFound(SessionError):
    code = "session_not_found"
    default_message = "no such session (or it belongs to someone else)"


class SessionEnded(SessionError):
    code = "session_ended"
    default_message = "the session has ended; start a new one"


class ExecNotFound(ExecGateError):
    code = "exec_not_found"
    default_message = "no such audit record"


class DuplicateRequest(ExecGateError):
    """An intent carried a request key already recorded (``fields["audit_id"]``: the
    exec recorded with it). Nothing was written."""

    code = "duplicate"
    default_message = "this request was already received; see the audit record"


class AuditUnavailable(ExecGateError):
    code = "audit_unavailable"
    default_message = "the audit log cannot be written, so nothing was run"


class AuditIntegrityError(ExecGateError):
    code = "audit_integrity"
    default_message = "the audit log failed verification"


class TargetError(ExecGateError):
    code = "bad_target"
    default_message = "targets are written [provider:]function[@qualifier]/instance"


class InstanceError(ExecGateError):
    code = "instance_error"
    default_message = "the instance could not be reached"


class UnknownProvider(InstanceError):
    code = "unknown_provider"
    default_message = "no such provider is configured"


class InstanceNotRunning(InstanceError):
    code = "instance_not_running"

    def __init__(
        self, instance: str, function: str, *, provider: str | None = None, **fields: Any
    ) -> None:
        # The provider, when known, is named in the hint: the instance may live on a
        # provider other than the default one.
        where = f" --provider {provider}" if provider else ""
        super().__init__(
            f"instance {instance} is not running (released or never existed); "
            f"list live instances with `execgate instances list {function}{where}`",
            instance=instance,
            function=function,
            **({"provider": provider} if provider else {}),
            **fields,
        )


class ProviderAuthError(InstanceError):
    code = "provider_auth"
    default_message = "the provider rejected ExecGate's credentials"


class ProviderAccessDenied(InstanceError):
    code = "provider_access_denied"
    default_message = "the provider denied access to this instance"


class ProviderUnavailable(InstanceError):
    code = "provider_unavailable"
    default_message = "the provider could not be reached"


class ExecTimeout(ExecGateError):
    code = "timeout"
    default_message = "the command timed out and was stopped"


class ArtifactError(ExecGateError):
    code = "artifact_error"
    default_message = "the artifact store could not complete the request"


class ArtifactNotFound(ArtifactError):
    code = "artifact_not_found"
    default_message = "no such artifact (or not one of yours)"


class ArtifactTooLarge(ArtifactError):
    code = "artifact_too_large"
    default_message = "the artifact is too large to read here; fetch it with its link"
