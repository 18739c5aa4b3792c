"""The audit intent of a request: what is written before anything runs."""

from __future__ import annotations

from policies.ports import ExecIntent, ExecStatus
from policies.types import Decision, Effect, SessionId, Surface, Target

STATUS_OF = {
    Effect.ALLOW: ExecStatus.RUNNING,
    Effect.DENY: ExecStatus.DENIED,
    Effect.APPROVE: ExecStatus.PENDING_APPROVAL,
}


def intent_for(
    principal: str,
    surface: Surface,
    target: Target,
    argv: tuple[str, ...],
    decision: Decision,
    *,
    command_text: str | None = None,
    reason: str = "",
    session_id: SessionId | None = None,
    request_key: str | None = None,
) -> ExecIntent:
    """The intent row for a decided request; its status follows the decision."""
    return ExecIntent(
        principal=principal,
        surface=surface.value,
        target=str(target),
        provider=target.provider or "",
        function=target.function,
        instance=target.instance,
        argv=argv,
        command_text=command_text,
        reason=reason,
        effect=decision.effect.value,
        rule_id=decision.rule_id,
        decision_reason=decision.reason,
        session_id=session_id,
        request_key=request_key,
        status=STATUS_OF[decision.effect],
    )
