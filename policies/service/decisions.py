"""Pure decisions of the service: a request's stages, what runs, and the engine's
decision with unknown principals refused up front. No I/O; every function takes the one
policy snapshot its request was decided on."""

from __future__ import annotations

from policies.errors import CommandRejected
from policies.rules.commands import build_shell_line, parse_command_text, validate_argv
from policies.rules.engine import evaluate
from policies.rules.model import Policy
from policies.service.results import Explanation
from policies.types import Decision, Effect, ExecRequest, Principal, Target

SYNTAX_RULE = "command-syntax"
BUILTIN_RULE = "session-builtin"
# Members of this policy role may read every principal's audit records and approval
# requests from any surface; everyone else sees their own.
AUDITOR_ROLE = "auditors"


def stages_of(request: ExecRequest) -> tuple[tuple[str, ...], ...]:
    """The validated stages of the request. Raises: CommandRejected."""
    if request.argv is not None and request.command_text is not None:
        raise CommandRejected("give either argv or command text, not both", kind="usage")
    if request.argv is not None:
        return (validate_argv(request.argv),)
    if request.command_text is not None:
        return parse_command_text(request.command_text).stages
    raise CommandRejected("no command given", kind="empty")


def runnable_argv(stages: tuple[tuple[str, ...], ...]) -> tuple[str, ...]:
    """What the provider runs: argv itself, or a shell line built from validated stages."""
    if len(stages) == 1:
        return stages[0]
    return ("/bin/sh", "-c", build_shell_line(stages))


def unknown_principal(principal: Principal) -> Decision:
    """The refusal of a principal the policy does not name in any role."""
    return Decision(
        effect=Effect.DENY,
        rule_id=None,
        reason=f"{principal} is not a known ExecGate user; ask an admin to add "
        "you to a role in the policy",
    )


def decide(
    policy: Policy, principal: Principal, target: Target, stages: tuple[tuple[str, ...], ...]
) -> Decision:
    """The engine's decision, with unknown principals refused up front."""
    if not policy.roles_of(principal):
        return unknown_principal(principal)
    return evaluate(policy, principal=principal, target=target, stages=stages)


def explain_request(
    policy: Policy, principal: Principal, target: Target, request: ExecRequest
) -> Explanation:
    """A dry-run decision for a request whose target provider is resolved."""
    try:
        stages = stages_of(request)
    except CommandRejected as exc:
        return Explanation(
            Decision(Effect.DENY, SYNTAX_RULE, exc.safe_message), str(target), (), (), exc.code
        )
    decision = decide(policy, principal, target, stages)
    return Explanation(decision, str(target), runnable_argv(stages), stages)
