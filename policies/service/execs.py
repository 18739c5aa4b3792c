"""Plain execs: a request decided, recorded, and run (or held for approval), alone or
in a session."""

from __future__ import annotations

import dataclasses

from policies.errors import AccessDenied, CommandRejected, DuplicateRequest, ErrorCode
from policies.ports import ExecIntent, ExecLog, SessionRecord
from policies.rules.model import Policy
from policies.service.asking import ApprovalAsker
from policies.service.decisions import (
    SYNTAX_RULE,
    decide,
    explain_request,
    runnable_argv,
    stages_of,
)
from policies.service.intents import intent_for
from policies.service.pipeline import Pipeline
from policies.service.results import DEFAULT_INLINE_LIMIT, ExecResult, Explanation, TextSink
from policies.service.session_state import Builtin, parse_builtin, recorded_form
from policies.service.sessions import Sessions
from policies.tracing import command_name
from policies.types import AuditId, Decision, Effect, ExecRequest, Principal, Target


@dataclasses.dataclass(frozen=True, slots=True)
class _Decided:
    """A request decided on one policy snapshot, before anything is recorded."""

    decision: Decision
    error_code: str | None
    stages: tuple[tuple[str, ...], ...] = ()
    argv: tuple[str, ...] = ()
    builtin: Builtin | None = None


class Execs:
    """Runs requests through the pipeline."""

    def __init__(
        self, pipeline: Pipeline, execs: ExecLog, sessions: Sessions, asker: ApprovalAsker
    ) -> None:
        self._pipeline = pipeline
        self._execs = execs
        self._sessions = sessions
        self._asker = asker

    async def explain(self, request: ExecRequest) -> Explanation:
        """The decision the request would get. Runs nothing, records nothing.

        Raises: UnknownProvider.
        """
        policy = self._pipeline.policy()
        target = self._pipeline.resolve_target(request.target)
        principal = await self._pipeline.principal(request.principal)
        return explain_request(policy, principal, target, request)

    async def exec(
        self,
        request: ExecRequest,
        *,
        on_output: TextSink | None = None,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
    ) -> ExecResult:
        """Decide, record, and (when allowed) run the request.

        Denials and pending approvals come back as results (effect deny/approve) after
        they were recorded. Raises: AuditUnavailable (nothing ran), UnknownProvider,
        TargetError, SessionNotFound, SessionEnded, CancelledError (recorded as
        cancelled).
        """
        pipeline = self._pipeline
        policy = pipeline.policy()
        principal = await pipeline.principal(request.principal)
        session: SessionRecord | None = None
        if request.session_id:
            session = await self._sessions.live(request.session_id, principal)
        target = pipeline.resolve_target(
            Target.parse(session.target) if session is not None else request.target
        )
        if request.request_key:
            existing = await self._execs.find_by_request_key(request.request_key)
            if existing is not None:
                return await self._duplicate(existing)
        with pipeline.deciding() as step:
            decided = _decide(policy, principal, target, request, session)
            step.decided(decided.decision)
            if step.recording:
                step.set(command=command_name(decided.argv, decided.decision))
        shown_argv, shown_text = recorded_form(decided.stages, decided.argv, request.command_text)

        def build(decision: Decision) -> ExecIntent:
            return intent_for(
                str(principal),
                request.surface,
                target,
                shown_argv,
                decision,
                command_text=shown_text,
                reason=request.reason,
                session_id=request.session_id,
                request_key=request.request_key,
            )

        # AuditUnavailable: nothing runs. DuplicateRequest: another delivery of this
        # request was recorded first, here or on another replica; nothing runs.
        try:
            recorded = await pipeline.record("exec", decided.decision, build, decided.error_code)
        except DuplicateRequest as exc:
            return await self._duplicate(AuditId(exc.fields["audit_id"]))
        decision = recorded.decision
        with pipeline.scope(recorded.audit_id):
            base = recorded.result(target, shown_argv)
            if decision.effect is Effect.DENY:
                code = recorded.error_code or AccessDenied.code
                return dataclasses.replace(base, error_code=code, error=decision.reason)
            if decision.effect is Effect.APPROVE:
                return await self._asker.ask(base, decision, principal, request)
            if session is None:
                return await pipeline.run(
                    base,
                    target,
                    decided.argv,
                    decision,
                    on_output=on_output,
                    inline_limit=inline_limit,
                )
            return await self._sessions.run_in(
                base,
                session,
                decided.builtin,
                decision,
                policy,
                principal,
                on_output,
                inline_limit,
            )

    async def _duplicate(self, audit_id: AuditId) -> ExecResult:
        record = await self._execs.get_exec(audit_id)
        intent = record.intent
        outcome = record.outcome
        return ExecResult(
            effect=Effect(intent.effect),
            rule=intent.rule_id,
            reason=intent.decision_reason,
            audit_id=audit_id,
            status=outcome.status if outcome else intent.status,
            target=intent.target,
            argv=intent.argv,
            exit_code=outcome.exit_code if outcome else None,
            error_code=ErrorCode.DUPLICATE,
            error="this request was already received; see the audit record",
        )


def _decide(
    policy: Policy,
    principal: Principal,
    target: Target,
    request: ExecRequest,
    session: SessionRecord | None,
) -> _Decided:
    try:
        stages = stages_of(request)
        argv = runnable_argv(stages)
        builtin = parse_builtin(stages) if session is not None else None
    except CommandRejected as exc:
        return _Decided(Decision(Effect.DENY, SYNTAX_RULE, exc.safe_message), exc.code)
    if not policy.roles_of(principal):
        decision = decide(policy, principal, target, stages)
        return _Decided(decision, ErrorCode.UNKNOWN_PRINCIPAL, stages, argv, builtin)
    if builtin is not None and session is not None:
        decision = Sessions.decide_builtin(policy, principal, target, session, builtin)
    else:
        decision = decide(policy, principal, target, stages)
    return _Decided(decision, None, stages, argv, builtin)
