"""ExecService: the one path every surface uses to run anything.

decide -> audit intent -> (approval) -> run -> scrub/truncate -> audit outcome.

Nothing runs without an intent row: if the audit store cannot record, the request is
refused (AuditUnavailable) before a provider is touched.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from policies.errors import (
    AccessDenied,
    AuditUnavailable,
    CommandRejected,
    ExecGateError,
    UnknownPrincipal,
    UnknownProvider,
)
from policies.logctx import audit_id_var
from policies.ports import (
    ApprovalRecord,
    ArtifactStore,
    AuditFilter,
    AuditStore,
    ExecIntent,
    ExecOutcome,
    ExecRecord,
    ExecStatus,
    InstanceProvider,
    RateCheck,
    SessionRecord,
    VerifyReport,
)
from policies.rules.commands import build_shell_line, parse_command_text, validate_argv
from policies.rules.engine import evaluate
from policies.rules.holder import PolicyHolder
from policies.rules.model import Policy
from policies.service.approvals import ApprovalsMixin, request_hash
from policies.service.collect import CollectMixin
from policies.service.intents import STATUS_OF, intent_for
from policies.service.output import CollectedOutput, OutputCollector
from policies.service.pipeline_output import OutputPlan, plan_output
from policies.service.results import DEFAULT_INLINE_LIMIT, ExecResult, Explanation, TextSink
from policies.service.review import ReviewService
from policies.service.session_state import Builtin, parse_builtin, recorded_form, resolve_dir
from policies.service.sessions import SessionsMixin
from policies.types import (
    ApprovalSpec,
    AuditId,
    Decision,
    Effect,
    ExecRequest,
    InstanceInfo,
    Principal,
    Stream,
    Target,
)

logger = logging.getLogger(__name__)

PrincipalResolver = Callable[[Principal], Awaitable[Principal]]
IntentBuilder = Callable[[Decision], ExecIntent]
ApprovalListener = Callable[[ApprovalRecord], Awaitable[None]]

SYNTAX_RULE = "command-syntax"
BUILTIN_RULE = "session-builtin"
# Members of this policy role may search every principal's audit records from Slack or
# MCP; everyone else sees their own.
AUDITOR_ROLE = "auditors"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _identity(principal: Principal) -> Principal:
    return principal


class ExecService(CollectMixin, ApprovalsMixin, SessionsMixin):
    """The chokepoint. Surfaces build ExecRequests and render what comes back."""

    def __init__(
        self,
        *,
        policies: PolicyHolder,
        audit: AuditStore,
        providers: Mapping[str, InstanceProvider],
        default_provider: str,
        spill_dir: Path | None = None,
        artifacts: ArtifactStore | None = None,
        link_ttl_seconds: float = 3600.0,
        artifact_prefix: str = "",
        resolve_principal: PrincipalResolver = _identity,
        clock: Callable[[], dt.datetime] = _utcnow,
        session_idle_seconds: float = 600.0,
    ) -> None:
        self._session_idle = session_idle_seconds
        self._approval_listeners: list[ApprovalListener] = []
        self._policies = policies
        self._audit = audit
        self._providers = dict(providers)
        self._default_provider = default_provider
        # Output that does not fit inline is spilled to files and stored as artifacts;
        # without a store there is nowhere to link it, so nothing is spilled.
        self._spill_dir = spill_dir if artifacts is not None else None
        self._artifacts = artifacts
        self._link_ttl = link_ttl_seconds
        self._artifact_prefix = artifact_prefix
        self._resolve = resolve_principal
        self._clock = clock
        # The audit log's read side for the review console (policies/service/review.py).
        self.review = ReviewService(
            policies=policies,
            audit=audit,
            artifacts=artifacts,
            resolve=resolve_principal,
            clock=clock,
            link_ttl_seconds=link_ttl_seconds,
        )

    def current_policy(self) -> Policy:
        """The policy in force now (reloaded when its file changes)."""
        return self._policies.current()

    def roles_of(self, principal: Principal) -> frozenset[str]:
        """The policy roles ``principal`` holds now (empty: not a known user)."""
        return self._policies.current().roles_of(principal)

    def add_approval_listener(self, listener: ApprovalListener) -> None:
        """Call ``listener`` with every new approval request (e.g. to post a Slack card)."""
        self._approval_listeners.append(listener)

    @property
    def audit(self) -> AuditStore:
        return self._audit

    @property
    def provider_names(self) -> list[str]:
        return sorted(self._providers)

    # ------------------------------------------------------------------ helpers

    def resolve_target(self, target: Target) -> Target:
        """Fill in the default provider. Raises: UnknownProvider."""
        resolved = target if target.provider else target.with_provider(self._default_provider)
        if resolved.provider not in self._providers:
            raise UnknownProvider(
                f"no provider named {resolved.provider!r} is configured "
                f"(configured: {', '.join(self.provider_names)})"
            )
        return resolved

    @staticmethod
    def stages_of(request: ExecRequest) -> tuple[tuple[str, ...], ...]:
        """The validated stages of the request. Raises: CommandRejected."""
        if request.argv is not None and request.command_text is not None:
            raise CommandRejected("give either argv or command text, not both", kind="usage")
        if request.argv is not None:
            return (validate_argv(request.argv),)
        if request.command_text is not None:
            return parse_command_text(request.command_text).stages
        raise CommandRejected("no command given", kind="empty")

    @staticmethod
    def runnable_argv(stages: tuple[tuple[str, ...], ...]) -> tuple[str, ...]:
        """What the provider runs: argv itself, or a shell line built from validated stages."""
        if len(stages) == 1:
            return stages[0]
        return ("/bin/sh", "-c", build_shell_line(stages))

    def _decide(
        self, principal: Principal, target: Target, stages: tuple[tuple[str, ...], ...]
    ) -> Decision:
        return decide(self._policies.current(), principal, target, stages)

    async def _record_intent(
        self, decision: Decision, build: IntentBuilder, error_code: str | None
    ) -> tuple[AuditId, Decision, str | None]:
        """Write the intent of ``decision`` (built by ``build``), or a rate-limit
        refusal when the principal used up the deciding rule's rate; returns the audit
        id, the decision recorded and its error code (``rate_limited`` for the refusal,
        else ``error_code``).

        Raises: AuditUnavailable (nothing may run).
        """
        rate = decision.rate
        if decision.effect is Effect.DENY or rate is None or not decision.rule_id:
            return await self._audit.record_intent(build(decision)), decision, error_code
        refusal = Decision(
            Effect.DENY,
            decision.rule_id,
            f"rate limit of rule {decision.rule_id} reached ({rate.count} per "
            f"{rate.per_seconds:g}s); try again later",
        )
        check = RateCheck(
            since=self._clock() - dt.timedelta(seconds=rate.per_seconds),
            limit=rate.count,
            refusal=build(refusal),
        )
        audit_id, limited = await self._audit.record_rated_intent(build(decision), check)
        if limited:
            return audit_id, refusal, "rate_limited"
        return audit_id, decision, error_code

    def _decide_builtin(
        self, principal: Principal, target: Target, session: SessionRecord, builtin: Builtin
    ) -> Decision:
        """cd may only enter a directory the principal may list; export/unset change
        only the session's own overlay."""
        if builtin.kind == "cd":
            wanted = resolve_dir(session.cwd, builtin.value)
            listing = self._decide(principal, target, (("ls", wanted),))
            if listing.effect is not Effect.ALLOW:
                return Decision(
                    Effect.DENY,
                    listing.rule_id,
                    f"cd is limited to directories you may list; {listing.reason}",
                )
        return Decision(Effect.ALLOW, BUILTIN_RULE, f"session builtin {builtin.kind}")

    # ------------------------------------------------------------------ dry run

    async def explain(self, request: ExecRequest) -> Explanation:
        """The decision the request would get. Runs nothing, records nothing.

        Raises: UnknownProvider.
        """
        target = self.resolve_target(request.target)
        principal = await self._resolve(request.principal)
        return explain_request(self._policies.current(), principal, target, request)

    # ------------------------------------------------------------------ exec

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
        TargetError.
        """
        principal = await self._resolve(request.principal)
        session: SessionRecord | None = None
        if request.session_id:
            session = await self._live_session(request.session_id, principal)
        target = self.resolve_target(
            Target.parse(session.target) if session is not None else request.target
        )
        if request.request_key:
            existing = await self._audit.find_by_request_key(request.request_key)
            if existing is not None:
                return await self._duplicate(existing)
        stages: tuple[tuple[str, ...], ...] = ()
        argv: tuple[str, ...] = ()
        error_code: str | None = None
        builtin: Builtin | None = None
        try:
            stages = self.stages_of(request)
            argv = self.runnable_argv(stages)
            builtin = parse_builtin(stages) if session is not None else None
            if builtin is not None and session is not None:
                decision = self._decide_builtin(principal, target, session, builtin)
            else:
                decision = self._decide(principal, target, stages)
            if not self._policies.current().roles_of(principal):
                decision = self._decide(principal, target, stages)
                error_code = "unknown_principal"
        except CommandRejected as exc:
            decision = Decision(Effect.DENY, SYNTAX_RULE, exc.safe_message)
            error_code = exc.code
        shown_argv, shown_text = recorded_form(stages, argv, request.command_text)

        def build(decided: Decision) -> ExecIntent:
            return intent_for(
                str(principal),
                request.surface,
                target,
                shown_argv,
                decided,
                command_text=shown_text,
                reason=request.reason,
                session_id=request.session_id,
                request_key=request.request_key,
            )

        # AuditUnavailable: nothing runs.
        audit_id, decision, error_code = await self._record_intent(decision, build, error_code)
        status = STATUS_OF[decision.effect]
        token = audit_id_var.set(audit_id)
        try:
            logger.info(
                "exec decided",
                extra={
                    "principal": str(principal),
                    "target": str(target),
                    "effect": decision.effect.value,
                    "rule": decision.rule_id,
                },
            )
            base = ExecResult(
                effect=decision.effect,
                rule=decision.rule_id,
                reason=decision.reason,
                audit_id=audit_id,
                status=status,
                target=str(target),
                argv=shown_argv,
            )
            if decision.effect is Effect.DENY:
                code = error_code or AccessDenied.code
                return _replace(base, error_code=code, error=decision.reason)
            if decision.effect is Effect.APPROVE:
                return await self._request_approval(base, decision, principal, request)
            if session is None:
                return await self._run(
                    base, target, argv, decision, audit_id, (), on_output, inline_limit
                )
            return await self._run_in_session(
                base, session, builtin, decision, on_output, inline_limit
            )
        finally:
            audit_id_var.reset(token)

    async def _duplicate(self, audit_id: AuditId) -> ExecResult:
        record = await self._audit.get_exec(audit_id)
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
            error_code="duplicate",
            error="this request was already received; see the audit record",
        )

    async def _request_approval(
        self,
        base: ExecResult,
        decision: Decision,
        principal: Principal,
        request: ExecRequest,
    ) -> ExecResult:
        spec = decision.approval or ApprovalSpec(approver_roles=())
        assert base.audit_id is not None
        record = await self._audit.create_approval(
            audit_id=base.audit_id,
            request_hash=request_hash(base.target, base.argv, str(principal)),
            requester=str(principal),
            target=base.target,
            argv=base.argv,
            reason=request.reason,
            rule_id=decision.rule_id or "",
            approver_roles=spec.approver_roles,
            threshold=spec.threshold,
            ttl_seconds=spec.ttl_seconds,
            surface=request.surface.value,
            context=dict(request.context),
        )
        for listener in self._approval_listeners:
            try:
                await listener(record)
            except Exception:
                # A surface that cannot post its approval card must not lose the
                # request: it stays pending and listed by `execgate approvals list`.
                logger.exception("approval listener failed", extra={"audit_id": base.audit_id})
        return _replace(
            base,
            approval_id=record.approval_id,
            approval_expires_at=record.expires_at.isoformat(),
        )

    async def _run(
        self,
        base: ExecResult,
        target: Target,
        argv: tuple[str, ...],
        decision: Decision,
        audit_id: AuditId,
        approvers: tuple[str, ...],
        on_output: TextSink | None,
        inline_limit: int,
        plan: OutputPlan | None = None,
    ) -> ExecResult:
        provider = self._providers[target.provider or self._default_provider]
        spill = self._spill_dir / audit_id if self._spill_dir is not None else None
        if plan is None:  # pipeline filters and printenv values: pipeline_output.py
            argv, plan = plan_output(argv)
        collector = plan.collector(
            OutputCollector(
                inline_limit=inline_limit,
                max_bytes=decision.limits.max_output_bytes,
                spill_dir=spill,
            ),
            max_bytes=decision.limits.max_output_bytes,
        )

        async def forward(stream: Stream, data: bytes) -> None:
            text = collector.feed(stream, data)
            if on_output is not None and text:
                await on_output(stream, text)

        started = self._clock()
        t0 = time.perf_counter()
        try:
            run = await provider.exec(target, argv, limits=decision.limits, on_output=forward)
        except ExecGateError as exc:
            _discard_spill(spill)
            await self._finish(
                audit_id,
                ExecOutcome(
                    status=ExecStatus.FAILED,
                    started_at=started,
                    ended_at=self._clock(),
                    approvers=approvers,
                    error=exc.code,
                ),
            )
            exc.audit_id = audit_id
            exc.fields["audit_id"] = audit_id
            raise
        except Exception:
            logger.exception("provider failed", extra={"audit_id": audit_id})
            _discard_spill(spill)
            await self._finish(
                audit_id,
                ExecOutcome(
                    status=ExecStatus.FAILED,
                    started_at=started,
                    ended_at=self._clock(),
                    approvers=approvers,
                    error="internal",
                ),
            )
            raise
        for stream in ("stdout", "stderr"):
            # A last line without a newline is only released at the end of its stream.
            tail = collector.end(stream)
            if on_output is not None and tail:
                await on_output(stream, tail)
        duration_ms = int((time.perf_counter() - t0) * 1000)
        run = dataclasses.replace(run, exit_code=collector.exit_code(run.exit_code))
        out: CollectedOutput = collector.finish()
        stored = await self._store_output(out, target, audit_id)
        timed_out = run.timed_out or run.idle_timed_out
        status = ExecStatus.TIMEOUT if timed_out else ExecStatus.COMPLETED
        if run.exit_code is None and not timed_out:
            status = ExecStatus.FAILED
        error_code = None
        error = None
        if timed_out:
            error_code = "timeout"
            which = "idle timeout" if run.idle_timed_out else "timeout"
            limit = decision.limits.idle_timeout if run.idle_timed_out else decision.limits.timeout
            error = f"the command hit its {which} of {limit:g}s and was stopped"
        elif run.error:
            error_code = "exec_error"
            error = run.error
        await self._finish(
            audit_id,
            ExecOutcome(
                status=status,
                exit_code=run.exit_code,
                started_at=started,
                ended_at=self._clock(),
                stdout_bytes=out.stdout_bytes,
                stderr_bytes=out.stderr_bytes,
                output_sha256=out.output_sha256,
                artifact_keys=tuple(a.key for a in stored.artifacts),
                approvers=approvers,
                error=error_code,
                stdout_text=out.stdout,
                stderr_text=out.stderr,
                artifacts=stored.artifacts,
            ),
        )
        return _replace(
            base,
            status=status,
            exit_code=run.exit_code,
            stdout=out.stdout,
            stderr=out.stderr,
            truncated=out.truncated,
            stdout_omitted=out.stdout_omitted,
            stderr_omitted=out.stderr_omitted,
            stdout_bytes=out.stdout_bytes,
            stderr_bytes=out.stderr_bytes,
            duration_ms=duration_ms,
            links=stored.links,
            error_code=error_code,
            error=error,
        )

    async def _finish(self, audit_id: AuditId, outcome: ExecOutcome) -> None:
        try:
            await self._audit.record_outcome(audit_id, outcome)
        except AuditUnavailable:
            # The command already ran; the intent row stands and will read as
            # interrupted. Say so loudly rather than hide the result.
            logger.error("could not record the outcome", extra={"audit_id": audit_id})

    # ------------------------------------------------------------------ instances, audit

    async def list_instances(
        self, function: str, *, provider: str | None = None, qualifier: str | None = None
    ) -> list[InstanceInfo]:
        """Raises: UnknownProvider and the provider's InstanceError subclasses."""
        name = provider or self._default_provider
        if name not in self._providers:
            raise UnknownProvider(f"no provider named {name!r} is configured")
        return await self._providers[name].list_instances(function, qualifier)

    async def audit_list(self, flt: AuditFilter) -> list[ExecRecord]:
        """Every matching record: for trusted local callers (the CLI on the host)."""
        return await self._audit.list_execs(flt)

    async def audit_search(self, principal: Principal, flt: AuditFilter) -> list[ExecRecord]:
        """Records ``principal`` may see: their own, or all for the auditor role.

        Raises: UnknownPrincipal.
        """
        principal = await self._resolve(principal)
        roles = self._policies.current().roles_of(principal)
        if not roles:
            raise UnknownPrincipal()
        if AUDITOR_ROLE not in roles:
            flt = dataclasses.replace(flt, principal=str(principal))
        return await self._audit.list_execs(flt)

    async def audit_get(self, audit_id: AuditId) -> ExecRecord:
        return await self._audit.get_exec(audit_id)

    async def audit_verify(self) -> VerifyReport:
        return await self._audit.verify()


def decide(
    policy: Policy, principal: Principal, target: Target, stages: tuple[tuple[str, ...], ...]
) -> Decision:
    """The engine's decision, with unknown principals refused up front. Pure."""
    if not policy.roles_of(principal):
        return Decision(
            effect=Effect.DENY,
            rule_id=None,
            reason=f"{principal} is not a known ExecGate user; ask an admin to add "
            "you to a role in the policy",
        )
    return evaluate(policy, principal=principal, target=target, stages=stages)


def explain_request(
    policy: Policy, principal: Principal, target: Target, request: ExecRequest
) -> Explanation:
    """A dry-run decision for a request whose target provider is resolved. Pure."""
    try:
        stages = ExecService.stages_of(request)
    except CommandRejected as exc:
        return Explanation(
            Decision(Effect.DENY, SYNTAX_RULE, exc.safe_message), str(target), (), (), exc.code
        )
    decision = decide(policy, principal, target, stages)
    return Explanation(decision, str(target), ExecService.runnable_argv(stages), stages)


def _discard_spill(spill: Path | None) -> None:
    """Spilled output of a run that failed: nothing will link it, so it goes."""
    if spill is not None:
        shutil.rmtree(spill, ignore_errors=True)


def _replace(result: ExecResult, **changes: object) -> ExecResult:
    import dataclasses

    return dataclasses.replace(result, **changes)  # type: ignore[arg-type]
