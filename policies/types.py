"""Values shared by the engine, the service, the providers and every surface."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NewType

from policies.errors import TargetError

AuditId = NewType("AuditId", str)
ApprovalId = NewType("ApprovalId", str)
SessionId = NewType("SessionId", str)

Stream = Literal["stdout", "stderr"]


class PrincipalKind(enum.StrEnum):
    SLACK = "slack"
    MCP = "mcp"
    LOCAL = "local"


class Surface(enum.StrEnum):
    SLACK = "slack"
    MCP = "mcp"
    CLI = "cli"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who asks, as verified by the surface.

    ``groups`` holds Slack user-group ids the surface resolved for a Slack user; the
    engine matches them against role definitions.
    """

    kind: PrincipalKind
    id: str
    groups: frozenset[str] = frozenset()

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> Principal:
        """Parse ``kind:id`` (``local:alice``, ``slack:U123``, ``mcp:claude``)."""
        kind, sep, ident = text.partition(":")
        if not sep or not ident:
            raise ValueError(f"principal must be kind:id, got {text!r}")
        return cls(PrincipalKind(kind), ident)


_NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}"
_TARGET_RE = re.compile(
    rf"^(?:(?P<provider>{_NAME}):)?(?P<function>{_NAME})(?:@(?P<qualifier>{_NAME}))?"
    rf"/(?P<instance>{_NAME})$"
)


@dataclass(frozen=True, slots=True)
class Target:
    """``[provider:]function[@qualifier]/instance``; provider None means the default."""

    function: str
    instance: str
    provider: str | None = None
    qualifier: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        """Raises: TargetError when the text is not a well-formed target."""
        match = _TARGET_RE.match(text)
        if match is None:
            raise TargetError(
                "targets are written [provider:]function[@qualifier]/instance, "
                "e.g. demo-api/c-1a2b3c"
            )
        return cls(
            function=match["function"],
            instance=match["instance"],
            provider=match["provider"],
            qualifier=match["qualifier"],
        )

    def with_provider(self, provider: str) -> Target:
        return Target(self.function, self.instance, provider, self.qualifier)

    def __str__(self) -> str:
        head = f"{self.provider}:" if self.provider else ""
        qual = f"@{self.qualifier}" if self.qualifier else ""
        return f"{head}{self.function}{qual}/{self.instance}"


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-exec limits; seconds and bytes."""

    timeout: float = 60.0
    idle_timeout: float = 600.0
    max_output_bytes: int = 1 << 20


class Effect(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    APPROVE = "approve"


@dataclass(frozen=True, slots=True)
class ApprovalSpec:
    approver_roles: tuple[str, ...]
    threshold: int = 1
    ttl_seconds: float = 900.0


@dataclass(frozen=True, slots=True)
class RateSpec:
    count: int
    per_seconds: float


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer; it names the rule that decided and why."""

    effect: Effect
    rule_id: str | None
    reason: str
    limits: Limits = field(default_factory=Limits)
    approval: ApprovalSpec | None = None
    rate: RateSpec | None = None
    # Stages of the validated pipeline; one stage for a plain command.
    stages: tuple[tuple[str, ...], ...] = ()
    collect_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExecRequest:
    """What a surface asks the service to run.

    Exactly one of ``argv`` and ``command_text`` is set: argv is preferred; text is
    parsed with POSIX rules by ``policies.rules.commands``.
    """

    principal: Principal
    surface: Surface
    target: Target
    argv: tuple[str, ...] | None = None
    command_text: str | None = None
    reason: str = ""
    session_id: SessionId | None = None
    stdin: bytes | None = None
    # Idempotency key from the surface (e.g. Slack retries); None when the surface has none.
    request_key: str | None = None
    # Where the surface wants to hear back (e.g. Slack channel and thread); stored with
    # an approval request so the result can be posted where it was asked for.
    context: tuple[tuple[str, str], ...] = ()


# How a local instance is isolated, as the local host chose it at start: bubblewrap
# with a user namespace mapping 65,536 ids onto a subordinate range ("bwrap-mapped":
# packet captures work), bubblewrap mapping only the running user ("bwrap-single"), or
# plain subprocesses as nobody ("none": sandbox = "none").
ISOLATION_MODES = ("bwrap-mapped", "bwrap-single", "none")


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    instance_id: str
    function: str
    provider: str
    status: str = "Running"
    qualifier: str | None = None
    version_id: str | None = None
    created_ms: int | None = None
    sandboxed: bool = True
    # One of ISOLATION_MODES for a local instance; None where the provider does not say
    # (Function Compute isolates its instances itself).
    isolation: str | None = None


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a provider reports when a command ends."""

    exit_code: int | None
    timed_out: bool = False
    idle_timed_out: bool = False
    error: str | None = None


def join_argv(argv: Sequence[str]) -> str:
    """A shell-quoted rendering of argv for display and audit."""
    import shlex

    return shlex.join(argv)
