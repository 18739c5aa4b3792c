"""Asking for approval: a decided request that needs approvers becomes an approval
request bound to its exact (target, argv, requester), and the surfaces listening hear
of it (e.g. to post a Slack card)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence

from policies.ports import ApprovalLog, ApprovalRecord, ApprovalRequest
from policies.service.results import ExecResult
from policies.types import ApprovalSpec, Decision, ExecRequest, Principal

logger = logging.getLogger(__name__)

ApprovalListener = Callable[[ApprovalRecord], Awaitable[None]]


def request_hash(target: str, argv: Sequence[str], requester: str) -> str:
    """The digest an approval is bound to: exactly this command, here, for this person."""
    canonical = json.dumps([target, list(argv), requester], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class ApprovalAsker:
    """Creates approval requests and tells the listeners."""

    def __init__(self, approvals: ApprovalLog) -> None:
        self._approvals = approvals
        self._listeners: list[ApprovalListener] = []

    def add_listener(self, listener: ApprovalListener) -> None:
        self._listeners.append(listener)

    async def ask(
        self, base: ExecResult, decision: Decision, principal: Principal, request: ExecRequest
    ) -> ExecResult:
        """``base`` (recorded, pending approval) with its approval request.

        Raises: AuditUnavailable.
        """
        spec = decision.approval or ApprovalSpec(approver_roles=())
        assert base.audit_id is not None
        record = await self._approvals.create_approval(
            ApprovalRequest(
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
        )
        for listener in self._listeners:
            try:
                await listener(record)
            except Exception:
                # A surface that cannot post its approval card must not lose the
                # request: it stays pending and listed by `execgate approvals list`.
                logger.exception("approval listener failed", extra={"audit_id": base.audit_id})
        return dataclasses.replace(
            base,
            approval_id=record.approval_id,
            approval_expires_at=record.expires_at.isoformat(),
        )
