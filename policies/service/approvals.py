"""ExecService's approvals: an approver's vote, and the run once the threshold is met.

An approval is bound to the exact (target, argv, requester); it counts only distinct
approvers who hold an approver role, never the requester and never an MCP client. When
it passes, the policy is consulted again: if it no longer asks for approval under the
same rule, nothing runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from policies.errors import (
    ApprovalExpired,
    ApprovalNotFound,
    NotAnApprover,
    PolicyError,
    SelfApprovalRefused,
)
from policies.logctx import audit_id_var
from policies.ports import (
    ApprovalRecord,
    ApprovalState,
    AuditStore,
    ExecOutcome,
    ExecStatus,
)
from policies.redaction import redact_text
from policies.rules.commands import parse_command_text
from policies.rules.engine import is_approver
from policies.service.results import DEFAULT_INLINE_LIMIT, ExecResult, TextSink, VoteResult
from policies.types import (
    ApprovalId,
    ApprovalSpec,
    Decision,
    Effect,
    Principal,
    PrincipalKind,
    Target,
)

if TYPE_CHECKING:
    from policies.rules.holder import PolicyHolder
    from policies.types import AuditId

logger = logging.getLogger(__name__)


def request_hash(target: str, argv: Sequence[str], requester: str) -> str:
    """The digest an approval is bound to: exactly this command, here, for this person."""
    canonical = json.dumps([target, list(argv), requester], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class ApprovalsMixin:
    """Approval methods of ExecService (kept apart to keep each module small)."""

    _audit: AuditStore
    _clock: Callable[[], dt.datetime]
    _policies: PolicyHolder
    _resolve: Callable[[Principal], Awaitable[Principal]]

    if TYPE_CHECKING:

        def resolve_target(self, target: Target) -> Target: ...

        def _decide(
            self, principal: Principal, target: Target, stages: tuple[tuple[str, ...], ...]
        ) -> Decision: ...

        async def _finish(self, audit_id: AuditId, outcome: ExecOutcome) -> None: ...

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
        ) -> ExecResult: ...

    async def vote(
        self,
        approval_id: ApprovalId,
        approver: Principal,
        *,
        approve: bool,
        reason: str = "",
        on_output: TextSink | None = None,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
    ) -> VoteResult:
        """Record an approver's vote; when the threshold is met, run the command.

        A denial's ``reason`` (scrubbed) is recorded in the outcome's ``stderr_text``:
        nothing ran, so that is where a reader of the record sees why.

        Raises: ApprovalNotFound, ApprovalExpired, ApprovalAlreadyDecided,
        SelfApprovalRefused, NotAnApprover, PolicyError, AuditUnavailable.
        """
        record = await self._audit.get_approval(approval_id)
        approver = await self._resolve(approver)
        if approver.kind is PrincipalKind.MCP:
            raise NotAnApprover("an AI assistant cannot approve commands; a human must")
        if str(approver) == record.requester:
            raise SelfApprovalRefused()
        if record.state is ApprovalState.PENDING and record.expires_at <= self._clock():
            await self._audit.expire_approvals(self._clock())
            raise ApprovalExpired()
        policy = self._policies.current()
        spec = ApprovalSpec(record.approver_roles, record.threshold)
        if not is_approver(policy, approver, spec):
            raise NotAnApprover(
                f"approving needs the role {' or '.join(record.approver_roles) or '(none)'}"
            )
        self._check_binding(record)
        updated = await self._audit.add_approval_vote(approval_id, str(approver), approve)
        if updated.state is ApprovalState.DENIED:
            await self._finish(
                updated.audit_id,
                ExecOutcome(
                    status=ExecStatus.APPROVAL_DENIED,
                    approvers=(str(approver),),
                    stderr_text=_denial(str(approver), reason),
                ),
            )
            return VoteResult(updated)
        if updated.state is not ApprovalState.APPROVED:
            return VoteResult(updated)
        claimed = await self._audit.claim_approved(approval_id)
        if claimed is None:
            return VoteResult(updated)
        result = await self._run_approved(claimed, on_output, inline_limit)
        return VoteResult(claimed, result)

    def _check_binding(self, record: ApprovalRecord) -> None:
        if request_hash(record.target, record.argv, record.requester) != record.request_hash:
            logger.error("approval binding mismatch", extra={"audit_id": record.audit_id})
            raise PolicyError("this approval request does not match its command; ask again")

    async def _run_approved(
        self, record: ApprovalRecord, on_output: TextSink | None, inline_limit: int
    ) -> ExecResult:
        target = self.resolve_target(Target.parse(record.target))
        requester = await self._resolve(Principal.parse(record.requester))
        stages = _stages_from_argv(record.argv)
        # The policy may have changed since the request: it must still ask for approval
        # under the same rule, or nothing runs.
        decision = self._decide(requester, target, stages)
        token = audit_id_var.set(record.audit_id)
        try:
            base = ExecResult(
                effect=decision.effect,
                rule=decision.rule_id,
                reason=decision.reason,
                audit_id=record.audit_id,
                status=ExecStatus.RUNNING,
                target=str(target),
                argv=record.argv,
                approval_id=record.approval_id,
            )
            if decision.effect is not Effect.APPROVE or decision.rule_id != record.rule_id:
                await self._finish(
                    record.audit_id,
                    ExecOutcome(
                        status=ExecStatus.DENIED,
                        approvers=record.approvals,
                        error="policy_changed",
                    ),
                )
                return dataclasses.replace(
                    base,
                    effect=Effect.DENY,
                    status=ExecStatus.DENIED,
                    error_code="policy_changed",
                    error="the policy changed since the request; it no longer allows this "
                    "command under the approved rule, so nothing ran",
                )
            return await self._run(
                base,
                target,
                record.argv,
                decision,
                record.audit_id,
                record.approvals,
                on_output,
                inline_limit,
            )
        finally:
            audit_id_var.reset(token)

    async def approval_result(
        self, approval_id: ApprovalId, principal: Principal
    ) -> tuple[ApprovalRecord, ExecResult | None]:
        """The approval and, once it ran (or was refused), its result as recorded.

        Only the requester or an approver of the request may read it.

        Raises: ApprovalNotFound.
        """
        record = await self._audit.get_approval(approval_id)
        principal = await self._resolve(principal)
        spec = ApprovalSpec(record.approver_roles, record.threshold)
        if str(principal) != record.requester and not is_approver(
            self._policies.current(), principal, spec
        ):
            raise ApprovalNotFound()
        if record.state is ApprovalState.PENDING and record.expires_at <= self._clock():
            await self._audit.expire_approvals(self._clock())
            record = await self._audit.get_approval(approval_id)
        execution = await self._audit.get_exec(record.audit_id)
        outcome = execution.outcome
        if outcome is None or outcome.status is ExecStatus.RUNNING:
            return record, None
        intent = execution.intent
        return record, ExecResult(
            effect=Effect(intent.effect),
            rule=intent.rule_id,
            reason=intent.decision_reason,
            audit_id=record.audit_id,
            status=outcome.status,
            target=intent.target,
            argv=intent.argv,
            exit_code=outcome.exit_code,
            stdout=outcome.stdout_text,
            stderr=outcome.stderr_text,
            stdout_bytes=outcome.stdout_bytes,
            stderr_bytes=outcome.stderr_bytes,
            approval_id=approval_id,
            error_code=outcome.error,
        )

    async def get_approval(self, approval_id: ApprovalId) -> ApprovalRecord:
        return await self._audit.get_approval(approval_id)

    async def list_approvals(self, state: ApprovalState | None = None) -> list[ApprovalRecord]:
        await self._audit.expire_approvals(self._clock())
        return await self._audit.list_approvals(state)


def _denial(approver: str, reason: str) -> str:
    if not reason.strip():
        return ""
    return f"denied by {approver}: {redact_text(reason.strip())}"


def _stages_from_argv(argv: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """Recover the stages an approved argv was built from (a pipeline runs as sh -c)."""
    if len(argv) == 3 and argv[:2] == ("/bin/sh", "-c"):
        # The line was built by ExecGate from validated stages; quoting may have made it
        # longer than the user's input, so the length cap is not the user's here.
        return parse_command_text(argv[2], max_length=len(argv[2]) + 1).stages
    return (argv,)
