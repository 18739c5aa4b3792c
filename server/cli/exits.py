"""The CLI's exit codes (sysexits.h where one fits), shared by every subcommand."""

from __future__ import annotations

from typing import TYPE_CHECKING

from policies.errors import (
    AccessDenied,
    ApprovalError,
    AuditIntegrityError,
    AuditUnavailable,
    CommandRejected,
    ConfigError,
    ExecGateError,
    ExecTimeout,
    InstanceError,
    PolicyLoadError,
    TargetError,
    UnknownPrincipal,
)
from policies.types import Effect

if TYPE_CHECKING:
    from policies.service.results import ExecResult

EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the audit store or an instance cannot be reached
EXIT_INTERNAL = 70  # EX_SOFTWARE
EXIT_PENDING = 75  # EX_TEMPFAIL: waiting for approval
EXIT_DENIED = 77  # EX_NOPERM
EXIT_CONFIG = 78  # EX_CONFIG
EXIT_TIMEOUT = 124  # as timeout(1)


def exit_code_for(exc: ExecGateError) -> int:
    """The exit code for an error that stopped a subcommand."""
    if isinstance(exc, ConfigError | PolicyLoadError):
        return EXIT_CONFIG
    if isinstance(exc, AccessDenied | CommandRejected | UnknownPrincipal | ApprovalError):
        return EXIT_DENIED
    if isinstance(exc, TargetError):
        return EXIT_USAGE
    if isinstance(exc, InstanceError | AuditUnavailable):
        return EXIT_UNAVAILABLE
    if isinstance(exc, ExecTimeout):
        return EXIT_TIMEOUT
    if isinstance(exc, AuditIntegrityError):
        return EXIT_CHECK_FAILED
    return EXIT_INTERNAL


def exec_exit_code(result: ExecResult) -> int:
    """The exit code of `execgate exec` (and of an approval that ran a command)."""
    if result.effect is Effect.DENY:
        return EXIT_DENIED
    if result.effect is Effect.APPROVE and result.exit_code is None and not result.error_code:
        return EXIT_PENDING
    if result.error_code == "timeout":
        return EXIT_TIMEOUT
    if result.exit_code is None:
        return EXIT_UNAVAILABLE
    return result.exit_code
