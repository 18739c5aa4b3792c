"""ExecService's approvals: an approver's vote, the run once the threshold is met, and
reading approval requests.

An approval is bound to the exact (target, argv, requester); it counts only distinct
approvers who hold an approver role, never the requester and never an MCP client. When
it passes, the policy is consulted again: if it no longer asks for approval under the
same rule, nothing runs.
"""

from __future__ import annotations

import dataclasses
import logging

from policies.collect.protocol import check_path, collect_path_of
from policies.errors import (
    ApprovalAlreadyDecided,
    ApprovalExpired,
    ApprovalNotFound,
    ErrorCode,
    NotAnApprover,
    PolicyError,
    SelfApprovalRefused,
    UnknownPrincipal,
)
from policies.ports import (
    ApprovalLog,
    ApprovalRecord,
    ApprovalState,
    ExecLog,
    ExecOutcome,
    ExecStatus,
)
from policies.redaction import redact_text
from policies.rules.commands import parse_command_text
from policies.rules.engine import is_approver
from policies.rules.model import Policy
from policies.service.asking import request_hash
from policies.service.collect import Collect, decide_collect
from policies.service.decisions import AUDITOR_ROLE, decide
from policies.service.pipeline import Pipeline, Recorded
from policies.service.results import DEFAULT_INLINE_LIMIT, ExecResult, TextSink, VoteResult
from policies.types import (
    ApprovalId,
    ApprovalSpec,
    Effect,
    Principal,
    PrincipalKind,
    Target,
)

logger = logging.getLogger(__name__)

# How a decided state reads in "already decided (...)".
_DECIDED = {ApprovalState.EXECUTED: "approved", ApprovalState.WITHDRAWN: "withdrawn"}

POLICY_CHANGED = (
    "the policy changed since the request; it no longer allows this under the approved "
    "rule, so nothing ran"
)


class Approvals:
    """Votes on approval requests, and who may read them."""

    def __init__(
        self, pipeline: Pipeline, approvals: ApprovalLog, execs: ExecLog, collect: Collect
    ) -> None:
        self._pipeline = pipeline
        self._approvals = approvals
        self._execs = execs
        self._collect = collect

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
        pipeline = self._pipeline
        policy = pipeline.policy()
        record = await self._approvals.get_approval(approval_id)
        approver = await pipeline.principal(approver)
        if approver.kind is PrincipalKind.MCP:
            raise NotAnApprover("an AI assistant cannot approve commands; a human must")
        # A decided request says so to whoever clicks, before who they are matters.
        await self._refuse_if_closed(record)
        if str(approver) == record.requester:
            raise SelfApprovalRefused()
        if not is_approver(policy, approver, _spec(record)):
            raise NotAnApprover(
                f"approving needs the role {' or '.join(record.approver_roles) or '(none)'}"
            )
        _check_binding(record)
        updated = await self._approvals.add_approval_vote(approval_id, str(approver), approve)
        if updated.state is ApprovalState.DENIED:
            await pipeline.finish(
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
        claimed = await self._approvals.claim_approved(approval_id)
        if claimed is None:
            return VoteResult(updated)
        result = await self._run_approved(claimed, policy, on_output, inline_limit)
        return VoteResult(claimed, result)

    async def withdraw(self, approval_id: ApprovalId, requester: Principal) -> ApprovalRecord:
        """The requester takes back their own pending request: it is recorded as
        withdrawn (the request and its exec) and can no longer be approved.

        Raises: ApprovalNotFound (also for anyone but the requester), ApprovalExpired,
        ApprovalAlreadyDecided, AuditUnavailable.
        """
        pipeline = self._pipeline
        requester = await pipeline.principal(requester)
        record = await self._approvals.get_approval(approval_id)
        if str(requester) != record.requester:
            raise ApprovalNotFound()
        await self._refuse_if_closed(record)
        withdrawn = await self._approvals.withdraw_approval(approval_id, str(requester))
        await pipeline.finish(withdrawn.audit_id, _outcome(ExecStatus.APPROVAL_WITHDRAWN, ()))
        return withdrawn

    async def _refuse_if_closed(self, record: ApprovalRecord) -> None:
        """Raises: ApprovalExpired (recording the expiry), ApprovalAlreadyDecided."""
        clock = self._pipeline.clock()
        if record.state is ApprovalState.PENDING and record.expires_at <= clock:
            await self._approvals.expire_approvals(clock)
            raise ApprovalExpired(approval_id=record.approval_id)
        if record.state is ApprovalState.EXPIRED:
            raise ApprovalExpired(approval_id=record.approval_id)
        if record.state is not ApprovalState.PENDING:
            shown = _DECIDED.get(record.state, record.state.value)
            raise ApprovalAlreadyDecided(
                f"this request was already decided ({shown})",
                approval_id=record.approval_id,
                state=record.state.value,
            )

    async def _run_approved(
        self,
        record: ApprovalRecord,
        policy: Policy,
        on_output: TextSink | None,
        inline_limit: int,
    ) -> ExecResult:
        pipeline = self._pipeline
        target = pipeline.resolve_target(Target.parse(record.target))
        requester = await pipeline.principal(Principal.parse(record.requester))
        path = collect_path_of(record.argv)
        # The policy may have changed since the request: it must still ask for approval
        # under the same rule, or nothing runs.
        with pipeline.deciding() as step:
            if path is None:
                decision = decide(policy, requester, target, _stages_from_argv(record.argv))
            else:
                decision, _ = decide_collect(policy, requester, target, check_path(path))
            step.decided(decision)
        with pipeline.scope(record.audit_id):
            recorded = Recorded(record.audit_id, decision, None)
            base = recorded.result(target, record.argv, status=ExecStatus.RUNNING)
            base = dataclasses.replace(base, approval_id=record.approval_id)
            changed = decision.effect is not Effect.APPROVE or decision.rule_id != record.rule_id
            if changed or (path is not None and self._collect.artifacts is None):
                return await pipeline.refuse(
                    base, record.approvals, ErrorCode.POLICY_CHANGED, POLICY_CHANGED
                )
            if path is not None:
                return await self._collect.run_approved(
                    record, base, path, decision, policy, requester
                )
            return await pipeline.run(
                base,
                target,
                record.argv,
                decision,
                approvers=record.approvals,
                on_output=on_output,
                inline_limit=inline_limit,
            )

    async def approval_result(
        self, approval_id: ApprovalId, principal: Principal
    ) -> tuple[ApprovalRecord, ExecResult | None]:
        """The approval and, once it ran (or was refused), its result as recorded, with
        fresh links to what the run stored.

        Only the requester, an approver of the request or an auditor may read it.

        Raises: ApprovalNotFound.
        """
        pipeline = self._pipeline
        record = await self._readable(approval_id, principal, pipeline.policy())
        if record.state is ApprovalState.PENDING and record.expires_at <= pipeline.clock():
            await self._approvals.expire_approvals(pipeline.clock())
            record = await self._approvals.get_approval(approval_id)
        execution = await self._execs.get_exec(record.audit_id)
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
            # A denial records its denier there too; only a run names approvers.
            approvers=outcome.approvers if record.state is ApprovalState.EXECUTED else (),
            links=await pipeline.outputs.links_for(outcome),
            error_code=outcome.error,
        )

    async def get_approval(self, approval_id: ApprovalId, principal: Principal) -> ApprovalRecord:
        """The request itself (what is asked, by whom, its state), as an approval card
        shows it: for any known principal. Its output is ``approval_result``'s.

        Raises: UnknownPrincipal, ApprovalNotFound.
        """
        policy = self._pipeline.policy()
        if not policy.roles_of(await self._pipeline.principal(principal)):
            raise UnknownPrincipal()
        return await self._approvals.get_approval(approval_id)

    async def list_approvals(
        self, principal: Principal, state: ApprovalState | None = None
    ) -> list[ApprovalRecord]:
        """The requests ``principal`` asked for or may approve (all for auditors).

        Raises: UnknownPrincipal.
        """
        pipeline = self._pipeline
        policy = pipeline.policy()
        principal = await pipeline.principal(principal)
        roles = policy.roles_of(principal)
        if not roles:
            raise UnknownPrincipal()
        await self._approvals.expire_approvals(pipeline.clock())
        records = await self._approvals.list_approvals(state)
        if AUDITOR_ROLE in roles:
            return records
        return [r for r in records if _may_read(policy, principal, r)]

    async def _readable(
        self, approval_id: ApprovalId, principal: Principal, policy: Policy
    ) -> ApprovalRecord:
        record = await self._approvals.get_approval(approval_id)
        principal = await self._pipeline.principal(principal)
        if not _may_read(policy, principal, record) and (
            AUDITOR_ROLE not in policy.roles_of(principal)
        ):
            raise ApprovalNotFound()
        return record


def _spec(record: ApprovalRecord) -> ApprovalSpec:
    return ApprovalSpec(record.approver_roles, record.threshold)


def _may_read(policy: Policy, principal: Principal, record: ApprovalRecord) -> bool:
    return str(principal) == record.requester or is_approver(policy, principal, _spec(record))


def _outcome(status: ExecStatus, approvers: tuple[str, ...]) -> ExecOutcome:
    return ExecOutcome(status=status, approvers=approvers)


def _check_binding(record: ApprovalRecord) -> None:
    if request_hash(record.target, record.argv, record.requester) != record.request_hash:
        logger.error("approval binding mismatch", extra={"audit_id": record.audit_id})
        raise PolicyError("this approval request does not match its command; ask again")


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
