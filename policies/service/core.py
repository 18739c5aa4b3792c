"""ExecService: the one path every surface uses to run anything.

decide -> audit intent -> (approval) -> run -> scrub/truncate -> audit outcome.

Nothing runs without an intent row: if the audit store cannot record, the request is
refused (AuditUnavailable) before a provider is touched.

ExecService is a facade: it builds its parts and forwards to them. Each part gets what
it needs in its constructor:

    Pipeline       decide -> record intent -> run -> record outcome, and the failure
                   path (failed, cancelled) every run shares
    Execs          plain execs and dry runs              (pipeline, sessions, asker)
    Sessions       pinned instance, cwd, env overlay     (pipeline, session log)
    Collect        files fetched as artifacts            (pipeline, asker)
    ApprovalAsker  approval requests and their listeners (approval log)
    Approvals      votes, the approved run, reading requests (pipeline, logs, collect)
    Lookups        instances and the audit log, checked per principal
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path

from policies.audit.anchors import AnchorStore
from policies.ports import (
    ApprovalRecord,
    ApprovalState,
    ArtifactStore,
    AuditFilter,
    AuditStore,
    ExecRecord,
    InstanceProvider,
    SessionRecord,
    VerifyReport,
)
from policies.rules.holder import PolicyHolder
from policies.rules.model import Policy
from policies.service.approvals import Approvals
from policies.service.artifact_reads import ArtifactReads
from policies.service.asking import ApprovalAsker, ApprovalListener
from policies.service.collect import Collect
from policies.service.decisions import AUDITOR_ROLE, explain_request
from policies.service.execs import Execs
from policies.service.lookups import Lookups
from policies.service.outputs import Outputs
from policies.service.pipeline import Pipeline, PrincipalResolver
from policies.service.results import (
    DEFAULT_INLINE_LIMIT,
    AuditSearch,
    CollectResult,
    ExecResult,
    Explanation,
    TextSink,
    VoteResult,
)
from policies.service.review import ReviewService
from policies.service.sessions import Sessions
from policies.tracing import NO_TRACING, Tracing, command_name
from policies.types import (
    ApprovalId,
    AuditId,
    ExecRequest,
    InstanceInfo,
    Principal,
    SessionId,
    Surface,
    Target,
)

__all__ = ["ExecService", "explain_request"]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _identity(principal: Principal) -> Principal:
    return principal


class ExecService:
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
        tracing: Tracing = NO_TRACING,
        anchors: AnchorStore | None = None,
    ) -> None:
        self._policies = policies
        self._audit = audit
        outputs = Outputs(artifacts, spill_dir, link_ttl_seconds, artifact_prefix, clock)
        pipeline = Pipeline(
            policies=policies,
            execs=audit,
            providers=providers,
            default_provider=default_provider,
            outputs=outputs,
            resolve_principal=resolve_principal,
            clock=clock,
            tracing=tracing,
        )
        self._pipeline = pipeline
        self._tracing = tracing
        self._asker = ApprovalAsker(audit)
        self._sessions = Sessions(pipeline, audit, session_idle_seconds)
        self._execs = Execs(pipeline, audit, self._sessions, self._asker)
        self._collect = Collect(pipeline, self._asker, audit)
        self._approvals = Approvals(pipeline, audit, audit, self._collect)
        self._lookups = Lookups(pipeline, audit)
        # The audit log's read side for the review console (policies/service/review.py).
        self.review = ReviewService(
            policies=policies,
            audit=audit,
            artifacts=artifacts,
            resolve=resolve_principal,
            clock=clock,
            link_ttl_seconds=link_ttl_seconds,
            anchors=anchors,
        )
        # Stored artifacts read back by the exec's principal or an auditor.
        self.artifact_reads = ArtifactReads(
            audit=audit,
            artifacts=artifacts,
            resolve=resolve_principal,
            roles_of=self.roles_of,
            auditor_role=AUDITOR_ROLE,
            link_ttl_seconds=link_ttl_seconds,
        )

    # ------------------------------------------------------------------ configuration

    def current_policy(self) -> Policy:
        """The policy in force now (reloaded when its file changes)."""
        return self._policies.current()

    def roles_of(self, principal: Principal) -> frozenset[str]:
        """The policy roles ``principal`` holds now (empty: not a known user)."""
        return self._policies.current().roles_of(principal)

    def add_approval_listener(self, listener: ApprovalListener) -> None:
        """Call ``listener`` with every new approval request (e.g. to post a Slack card)."""
        self._asker.add_listener(listener)

    @property
    def audit(self) -> AuditStore:
        return self._audit

    @property
    def artifacts(self) -> ArtifactStore | None:
        """The configured artifact store (the HTTP app serves local-store links)."""
        return self._collect.artifacts

    @property
    def provider_names(self) -> list[str]:
        return self._pipeline.provider_names

    def resolve_target(self, target: Target) -> Target:
        """Fill in the default provider. Raises: UnknownProvider."""
        return self._pipeline.resolve_target(target)

    # ------------------------------------------------------------------ execs

    async def explain(self, request: ExecRequest) -> Explanation:
        return await self._execs.explain(request)

    async def exec(
        self,
        request: ExecRequest,
        *,
        on_output: TextSink | None = None,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
    ) -> ExecResult:
        command = command_name(request.argv) if self._tracing.enabled else None
        with self._tracing.request(
            "exec", request.principal, request.surface, request.target, command=command
        ) as span:
            result = await self._execs.exec(request, on_output=on_output, inline_limit=inline_limit)
            span.finished(result)
            return result

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
        with self._tracing.request("collect", principal, surface, target) as span:
            result = await self._collect.collect(
                principal,
                surface,
                target,
                path,
                reason=reason,
                context=context,
                request_key=request_key,
            )
            span.finished(result)
            return result

    # ------------------------------------------------------------------ approvals

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
        with self._tracing.request("approval", approver, None) as span:
            span.set(approval_id=approval_id, approve=approve)
            vote = await self._approvals.vote(
                approval_id,
                approver,
                approve=approve,
                reason=reason,
                on_output=on_output,
                inline_limit=inline_limit,
            )
            span.set(approval_state=vote.approval.state.value)
            if vote.result is not None:
                span.finished(vote.result)
            return vote

    async def withdraw(self, approval_id: ApprovalId, requester: Principal) -> ApprovalRecord:
        return await self._approvals.withdraw(approval_id, requester)

    async def approval_result(
        self, approval_id: ApprovalId, principal: Principal
    ) -> tuple[ApprovalRecord, ExecResult | None]:
        return await self._approvals.approval_result(approval_id, principal)

    async def get_approval(self, approval_id: ApprovalId, principal: Principal) -> ApprovalRecord:
        return await self._approvals.get_approval(approval_id, principal)

    async def list_approvals(
        self, principal: Principal, state: ApprovalState | None = None
    ) -> list[ApprovalRecord]:
        return await self._approvals.list_approvals(principal, state)

    # ------------------------------------------------------------------ sessions

    async def session_start(
        self, principal: Principal, target: Target, *, reason: str = ""
    ) -> SessionRecord:
        return await self._sessions.start(principal, target, reason=reason)

    async def session_get(self, session_id: SessionId, principal: Principal) -> SessionRecord:
        return await self._sessions.get(session_id, principal)

    async def session_end(
        self, session_id: SessionId, principal: Principal, *, reason: str = "ended by its owner"
    ) -> SessionRecord:
        return await self._sessions.end(session_id, principal, reason=reason)

    @property
    def session_idle_seconds(self) -> float:
        """How long a session may go without commands before it ends."""
        return self._sessions.idle_seconds

    async def session_end_if_idle(
        self, session_id: SessionId, principal: Principal
    ) -> SessionRecord:
        return await self._sessions.end_if_idle(session_id, principal)

    async def session_anchor(
        self, session_id: SessionId, principal: Principal, anchor: str
    ) -> SessionRecord:
        return await self._sessions.anchor(session_id, principal, anchor)

    async def session_at(self, anchor: str) -> SessionRecord | None:
        return await self._sessions.at(anchor)

    # ------------------------------------------------------------------ look-ups

    async def list_instances(
        self,
        principal: Principal,
        function: str,
        *,
        provider: str | None = None,
        qualifier: str | None = None,
    ) -> list[InstanceInfo]:
        return await self._lookups.list_instances(
            principal, function, provider=provider, qualifier=qualifier
        )

    async def audit_list(self, flt: AuditFilter) -> list[ExecRecord]:
        return await self._lookups.audit_list(flt)

    async def audit_search(self, principal: Principal, flt: AuditFilter) -> list[ExecRecord]:
        """The records ``principal`` may see (see ``search_audit``)."""
        return (await self._lookups.audit_search(principal, flt)).records

    async def search_audit(self, principal: Principal, flt: AuditFilter) -> AuditSearch:
        """The records ``principal`` may see, and whether the filter was narrowed to them."""
        return await self._lookups.audit_search(principal, flt)

    async def audit_get(self, principal: Principal, audit_id: AuditId) -> ExecRecord:
        return await self._lookups.audit_get(principal, audit_id)

    async def audit_verify(self) -> VerifyReport:
        return await self._lookups.audit_verify()
