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
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from policies.artifacts.keys import FILES, artifact_key, link_label
from policies.artifacts.spill import StoredOutput, store_spills
from policies.collect.protocol import (
    Refusal,
    check_path,
    collect_path_of,
    file_name,
    symbolic_argv,
)
from policies.collect.run import fetch
from policies.errors import ArtifactError, ExecGateError
from policies.logctx import audit_id_var
from policies.ports import (
    ApprovalRecord,
    ArtifactStore,
    AuditStore,
    ExecIntent,
    ExecOutcome,
    ExecStatus,
    InstanceProvider,
)
from policies.rules.engine import evaluate_collect
from policies.service.approvals import ApprovalsMixin
from policies.service.intents import STATUS_OF, intent_for
from policies.service.output import CollectedOutput
from policies.service.results import CollectResult, ExecResult, TextSink
from policies.types import (
    ApprovalId,
    AuditId,
    Decision,
    Effect,
    ExecRequest,
    Principal,
    Surface,
    Target,
)

if TYPE_CHECKING:
    from policies.rules.holder import PolicyHolder

logger = logging.getLogger(__name__)

PATH_RULE = "collect-path"


class CollectMixin(ApprovalsMixin):
    """Collect methods of ExecService, and the artifact side of large output."""

    _audit: AuditStore
    _clock: Callable[[], dt.datetime]
    _policies: PolicyHolder
    _resolve: Callable[[Principal], Awaitable[Principal]]
    _providers: Mapping[str, InstanceProvider]
    _default_provider: str
    _artifacts: ArtifactStore | None
    _link_ttl: float
    _artifact_prefix: str

    if TYPE_CHECKING:

        async def _record_intent(
            self,
            decision: Decision,
            build: Callable[[Decision], ExecIntent],
            error_code: str | None,
        ) -> tuple[AuditId, Decision, str | None]: ...

        async def _request_approval(
            self,
            base: ExecResult,
            decision: Decision,
            principal: Principal,
            request: ExecRequest,
        ) -> ExecResult: ...

    @property
    def artifacts(self) -> ArtifactStore | None:
        """The configured artifact store (the HTTP app serves local-store links)."""
        return self._artifacts

    # ------------------------------------------------------------------ collect

    async def collect(
        self,
        principal: Principal,
        surface: Surface,
        target: Target,
        path: str,
        *,
        reason: str = "",
        context: tuple[tuple[str, str], ...] = (),
    ) -> CollectResult:
        """Fetch ``path`` from ``target`` into the artifact store; see the module docstring.

        Raises: ArtifactError, AuditUnavailable, UnknownProvider, TargetError,
        InstanceError.
        """
        if self._artifacts is None:
            raise ArtifactError("no artifact store is configured, so files cannot be collected")
        principal = await self._resolve(principal)
        target = self.resolve_target(target)
        checked = check_path(path)
        shown = checked if isinstance(checked, str) else path[:512]
        decision, error_code = self._decide_collect(principal, target, checked)
        argv = symbolic_argv(shown)

        def build(decided: Decision) -> ExecIntent:
            return intent_for(str(principal), surface, target, argv, decided, reason=reason)

        audit_id, decision, error_code = await self._record_intent(decision, build, error_code)
        status = STATUS_OF[decision.effect]
        token = audit_id_var.set(audit_id)
        try:
            logger.info(
                "collect decided",
                extra={
                    "target": str(target),
                    "effect": decision.effect.value,
                    "rule": decision.rule_id,
                },
            )
            base = CollectResult(
                effect=decision.effect,
                rule=decision.rule_id,
                reason=decision.reason,
                audit_id=audit_id,
                status=status,
                target=str(target),
                path=shown,
                max_bytes=None if decision.effect is Effect.DENY else _cap(decision),
            )
            if decision.effect is Effect.DENY:
                return dataclasses.replace(
                    base, error_code=error_code or "denied", error=decision.reason
                )
            if decision.effect is Effect.APPROVE:
                request = ExecRequest(
                    principal, surface, target, argv=argv, reason=reason, context=context
                )
                pending = await self._request_approval(
                    CollectResult.to_exec_result(base, argv), decision, principal, request
                )
                return dataclasses.replace(
                    base,
                    approval_id=pending.approval_id,
                    approval_expires_at=pending.approval_expires_at,
                )
            return await self._collect_run(base, target, shown, decision, principal, ())
        finally:
            audit_id_var.reset(token)

    def _decide_collect(
        self, principal: Principal, target: Target, checked: str | Refusal
    ) -> tuple[Decision, str | None]:
        if isinstance(checked, Refusal):
            return Decision(Effect.DENY, PATH_RULE, checked.message), checked.code
        policy = self._policies.current()
        if not policy.roles_of(principal):
            return Decision(
                Effect.DENY,
                None,
                f"{principal} is not a known ExecGate user; ask an admin to add you to a "
                "role in the policy",
            ), "unknown_principal"
        return evaluate_collect(policy, principal=principal, target=target, path=checked), None

    async def _collect_run(
        self,
        base: CollectResult,
        target: Target,
        path: str,
        decision: Decision,
        requester: Principal,
        approvers: tuple[str, ...],
    ) -> CollectResult:
        store = self._artifacts
        assert store is not None and base.audit_id is not None
        audit_id = base.audit_id
        provider = self._providers[target.provider or self._default_provider]
        started = self._clock()
        t0 = time.perf_counter()
        key = artifact_key(
            when=started,
            target=str(target),
            audit_id=audit_id,
            kind=FILES,
            name=file_name(path),
            prefix=self._artifact_prefix,
        )

        def follow(resolved: str) -> str | Refusal:
            return self._follow(requester, target, path, resolved, decision)

        try:
            fetched = await fetch(
                provider, store, target, path, decision=decision, key=key, follow=follow
            )
        except Exception as exc:
            code = exc.code if isinstance(exc, ExecGateError) else "internal"
            if not isinstance(exc, ExecGateError):
                logger.exception("collect failed", extra={"audit_id": audit_id})
            failed = ExecOutcome(
                status=ExecStatus.FAILED,
                started_at=started,
                ended_at=self._clock(),
                approvers=approvers,
                error=code,
            )
            await self._finish(audit_id, failed)
            if isinstance(exc, ExecGateError):
                exc.audit_id = audit_id
                exc.fields["audit_id"] = audit_id
            raise
        outcome = fetched.outcome(started=started, ended=self._clock(), approvers=approvers)
        await self._finish(audit_id, outcome)
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
            link = await store.link(info.key, ttl_seconds=self._link_ttl)
        except ArtifactError as exc:
            return dataclasses.replace(done, error_code="link_unavailable", error=exc.safe_message)
        expires = self._clock() + dt.timedelta(seconds=self._link_ttl)
        return dataclasses.replace(done, link=link, link_expires_at=expires.isoformat())

    def _follow(
        self, requester: Principal, target: Target, path: str, resolved: str, decision: Decision
    ) -> str | Refusal:
        """The real path behind a symlink, when the same rule lets the requester have it."""
        checked = check_path(resolved)
        escape = Refusal(
            "symlink_escape",
            f"{path} leads to {resolved[:512]}, outside what rule {decision.rule_id} "
            "lets you collect",
        )
        if isinstance(checked, Refusal):
            return escape
        again = evaluate_collect(
            self._policies.current(), principal=requester, target=target, path=checked
        )
        if again.effect is Effect.DENY or again.rule_id != decision.rule_id:
            return escape
        return checked

    # ------------------------------------------------------------------ approvals

    async def _run_approved(
        self, record: ApprovalRecord, on_output: TextSink | None, inline_limit: int
    ) -> ExecResult:
        path = collect_path_of(record.argv)
        if path is None:
            return await super()._run_approved(record, on_output, inline_limit)
        target = self.resolve_target(Target.parse(record.target))
        requester = await self._resolve(Principal.parse(record.requester))
        decision, _ = self._decide_collect(requester, target, check_path(path))
        token = audit_id_var.set(record.audit_id)
        try:
            base = CollectResult(
                effect=decision.effect,
                rule=decision.rule_id,
                reason=decision.reason,
                audit_id=record.audit_id,
                status=ExecStatus.RUNNING,
                target=str(target),
                path=path,
                approval_id=record.approval_id,
                max_bytes=_cap(decision),
            )
            changed = decision.effect is not Effect.APPROVE or decision.rule_id != record.rule_id
            if changed or self._artifacts is None:
                await self._finish(
                    record.audit_id,
                    ExecOutcome(
                        status=ExecStatus.DENIED,
                        approvers=record.approvals,
                        error="policy_changed",
                    ),
                )
                return CollectResult.to_exec_result(
                    dataclasses.replace(
                        base,
                        effect=Effect.DENY,
                        status=ExecStatus.DENIED,
                        error_code="policy_changed",
                        error="the policy changed since the request; it no longer lets you "
                        "collect this path under the approved rule, so nothing was fetched",
                    ),
                    record.argv,
                )
            done = await self._collect_run(
                base, target, path, decision, requester, record.approvals
            )
            return CollectResult.to_exec_result(done, record.argv)
        finally:
            audit_id_var.reset(token)

    async def approval_result(
        self, approval_id: ApprovalId, principal: Principal
    ) -> tuple[ApprovalRecord, ExecResult | None]:
        """As ApprovalsMixin.approval_result, with fresh links to what the run stored.

        Raises: ApprovalNotFound.
        """
        record, result = await super().approval_result(approval_id, principal)
        if result is None or self._artifacts is None:
            return record, result
        outcome = (await self._audit.get_exec(record.audit_id)).outcome
        links: dict[str, str] = {}
        for info in outcome.artifacts if outcome else ():
            try:
                links[link_label(info.key)] = await self._artifacts.link(
                    info.key, ttl_seconds=self._link_ttl
                )
            except ArtifactError as exc:
                logger.warning("no link for %s: %s", info.key, exc.safe_message)
        return record, dataclasses.replace(result, links=links) if links else result

    # ------------------------------------------------------------------ large output

    async def _store_output(
        self, out: CollectedOutput, target: Target, audit_id: AuditId
    ) -> StoredOutput:
        """The full output of streams that did not fit inline, stored and linked."""
        if self._artifacts is None or not out.spill_files:
            return StoredOutput()
        return await store_spills(
            self._artifacts,
            out.spill_files,
            when=self._clock(),
            target=str(target),
            audit_id=audit_id,
            ttl_seconds=self._link_ttl,
            prefix=self._artifact_prefix,
        )


def _cap(decision: Decision) -> int:
    return decision.limits.max_output_bytes
