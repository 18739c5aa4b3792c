"""ExecService's collect: fetch a file from an instance as an artifact, under policy.

Stable surface API (the CLI, the MCP tool ``collect_artifact`` and Slack's
``/exec collect`` call exactly this)::

    result: CollectResult = await service.collect(
        principal, surface, target, path, reason="...", context=(("channel", "C1"),)
    )

``result.ok`` -> ``result.link`` (expiring at ``result.link_expires_at``) and
``result.artifact`` (key, size, sha256, content type). Denials, pending approvals
(``result.approval_id``) and refusals (``result.error_code``, ``result.error``) are
results too, recorded before they are returned. Raises: ArtifactError (no artifact
store configured, or the store failed), AuditUnavailable (nothing ran), UnknownProvider,
TargetError, InstanceNotRunning and other InstanceError.

How it runs: the policy decides on the path (``policies.rules.engine.evaluate_collect``);
the audit intent is written with the symbolic argv ``execgate-collect PATH``; the
instance runs the transport script of ``policies.collect.protocol`` through the ordinary exec
channel; the bytes stream into the artifact store; the outcome row records the
artifact's key, size, sha256 and content type. A path that is a symlink is followed
only when its real path is collectable under the same rule.

Approvals: a collect that needs approval creates an ordinary approval request whose
argv is the symbolic ``execgate-collect PATH`` (what approvers see on the card, bound
to the exact path). When it is approved, ``vote`` runs the collect (not a command):
the policy is asked again for that path and must still require approval under the same
rule; the vote's ``ExecResult`` carries the link as ``links["artifact"]``.

Redelivery: a ``request_key`` (a Slack delivery's key) is recorded on the intent; a
collect whose key is already in the audit log, written by any ExecGate process sharing
the database, runs nothing and comes back with ``error_code`` ``duplicate``.
"""

from __future__ import annotations

import dataclasses
import time

from policies.artifacts.keys import FILES, artifact_key
from policies.collect.protocol import (
    COLLECT_VERB,
    Refusal,
    check_path,
    file_name,
    symbolic_argv,
)
from policies.collect.run import fetch
from policies.errors import ArtifactError, DuplicateRequest, ErrorCode
from policies.ports import ApprovalRecord, ArtifactStore, ExecIntent, ExecLog
from policies.rules.engine import evaluate_collect
from policies.rules.model import Policy
from policies.service.asking import ApprovalAsker
from policies.service.decisions import unknown_principal
from policies.service.intents import intent_for
from policies.service.pipeline import Pipeline
from policies.service.results import CollectResult, ExecResult
from policies.types import AuditId, Decision, Effect, ExecRequest, Principal, Surface, Target

PATH_RULE = "collect-path"


class Collect:
    """Files fetched from instances into the artifact store, under policy."""

    def __init__(self, pipeline: Pipeline, asker: ApprovalAsker, execs: ExecLog) -> None:
        self._pipeline = pipeline
        self._asker = asker
        self._execs = execs

    @property
    def artifacts(self) -> ArtifactStore | None:
        return self._pipeline.outputs.artifacts

    async def collect(
        self,
        principal: Principal,
        surface: Surface,
        target: Target,
        path: str,
        *,
        reason: str = "",
        context: tuple[tuple[str, str], ...] = (),
        request_key: str | None = None,
    ) -> CollectResult:
        """Fetch ``path`` from ``target`` into the artifact store; see the module docstring.

        Raises: ArtifactError, AuditUnavailable, UnknownProvider, TargetError,
        InstanceError.
        """
        if self.artifacts is None:
            raise ArtifactError("no artifact store is configured, so files cannot be collected")
        pipeline = self._pipeline
        policy = pipeline.policy()
        principal = await pipeline.principal(principal)
        target = pipeline.resolve_target(target)
        checked = check_path(path)
        shown = checked if isinstance(checked, str) else path[:512]
        if request_key:
            existing = await self._execs.find_by_request_key(request_key)
            if existing is not None:
                return await self._duplicate(existing, shown)
        with pipeline.deciding() as step:
            decision, error_code = decide_collect(policy, principal, target, checked)
            step.decided(decision)
        argv = symbolic_argv(shown)

        def build(decided: Decision) -> ExecIntent:
            return intent_for(
                str(principal),
                surface,
                target,
                argv,
                decided,
                reason=reason,
                request_key=request_key,
            )

        try:
            recorded = await pipeline.record("collect", decision, build, error_code)
        except DuplicateRequest as exc:  # recorded first by another delivery
            return await self._duplicate(AuditId(exc.fields["audit_id"]), shown)
        decision = recorded.decision
        with pipeline.scope(recorded.audit_id):
            cap = None if decision.effect is Effect.DENY else _cap(decision)
            base = CollectResult.of(recorded.result(target, argv), shown, cap)
            if decision.effect is Effect.DENY:
                return dataclasses.replace(
                    base,
                    error_code=recorded.error_code or ErrorCode.DENIED,
                    error=decision.reason,
                )
            if decision.effect is Effect.APPROVE:
                request = ExecRequest(
                    principal, surface, target, argv=argv, reason=reason, context=context
                )
                pending = await self._asker.ask(
                    CollectResult.to_exec_result(base, argv), decision, principal, request
                )
                return dataclasses.replace(
                    base,
                    approval_id=pending.approval_id,
                    approval_expires_at=pending.approval_expires_at,
                )
            return await self._run(base, target, shown, decision, policy, principal, ())

    async def _duplicate(self, audit_id: AuditId, path: str) -> CollectResult:
        record = await self._execs.get_exec(audit_id)
        intent, outcome = record.intent, record.outcome
        return CollectResult(
            effect=Effect(intent.effect),
            rule=intent.rule_id,
            reason=intent.decision_reason,
            audit_id=audit_id,
            status=outcome.status if outcome else intent.status,
            target=intent.target,
            path=path,
            error_code=ErrorCode.DUPLICATE,
            error="this request was already received; see the audit record",
        )

    async def run_approved(
        self,
        record: ApprovalRecord,
        base: ExecResult,
        path: str,
        decision: Decision,
        policy: Policy,
        requester: Principal,
    ) -> ExecResult:
        """Fetch the path of an approved collect (already checked against the policy)."""
        target = Target.parse(base.target)
        collect_base = CollectResult.of(base, path, _cap(decision))
        done = await self._run(
            collect_base, target, path, decision, policy, requester, record.approvals
        )
        return CollectResult.to_exec_result(done, record.argv)

    async def _run(
        self,
        base: CollectResult,
        target: Target,
        path: str,
        decision: Decision,
        policy: Policy,
        requester: Principal,
        approvers: tuple[str, ...],
    ) -> CollectResult:
        pipeline = self._pipeline
        store = self.artifacts
        assert store is not None and base.audit_id is not None
        audit_id = base.audit_id
        provider = pipeline.provider(target.provider)
        t0 = time.perf_counter()

        def follow(resolved: str) -> str | Refusal:
            return _follow(policy, requester, target, path, resolved, decision)

        async with pipeline.failure_path(audit_id, approvers=approvers) as started:
            key = artifact_key(
                when=started,
                target=str(target),
                audit_id=audit_id,
                kind=FILES,
                name=file_name(path),
                prefix=pipeline.outputs.prefix,
            )
            with pipeline.provider_step(target, (COLLECT_VERB,), decision):
                fetched = await fetch(
                    provider, store, target, path, decision=decision, key=key, follow=follow
                )
        outcome = fetched.outcome(started=started, ended=pipeline.clock(), approvers=approvers)
        await pipeline.finish(audit_id, outcome)
        refusal, info = fetched.refusal, fetched.info
        done = dataclasses.replace(
            base,
            status=fetched.status,
            resolved_path=fetched.path if fetched.path != path else None,
            duration_ms=int((time.perf_counter() - t0) * 1000),
            error_code=refusal.code if refusal else None,
            error=refusal.message if refusal else None,
        )
        if info is None:
            return done
        done = dataclasses.replace(done, artifact=info)
        try:
            link = await store.link(info.key, ttl_seconds=pipeline.outputs.link_ttl)
        except ArtifactError as exc:
            return dataclasses.replace(
                done, error_code=ErrorCode.LINK_UNAVAILABLE, error=exc.safe_message
            )
        return dataclasses.replace(done, link=link, link_expires_at=pipeline.outputs.link_expiry())


def decide_collect(
    policy: Policy, principal: Principal, target: Target, checked: str | Refusal
) -> tuple[Decision, str | None]:
    """The decision on a collect of the checked path, with its error code."""
    if isinstance(checked, Refusal):
        return Decision(Effect.DENY, PATH_RULE, checked.message), checked.code
    if not policy.roles_of(principal):
        return unknown_principal(principal), ErrorCode.UNKNOWN_PRINCIPAL
    return evaluate_collect(policy, principal=principal, target=target, path=checked), None


def _follow(
    policy: Policy,
    requester: Principal,
    target: Target,
    path: str,
    resolved: str,
    decision: Decision,
) -> str | Refusal:
    """The real path behind a symlink, when the same rule lets the requester have it."""
    checked = check_path(resolved)
    escape = Refusal(
        "symlink_escape",
        f"{path} leads to {resolved[:512]}, outside what rule {decision.rule_id} lets you collect",
    )
    if isinstance(checked, Refusal):
        return escape
    again = evaluate_collect(policy, principal=requester, target=target, path=checked)
    if again.effect is Effect.DENY or again.rule_id != decision.rule_id:
        return escape
    return checked


def _cap(decision: Decision) -> int:
    return decision.limits.max_output_bytes
