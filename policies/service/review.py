"""Reading the audit log, for the review console: who may see which records.

Every read takes the principal asking and decides here, from the policy in force:
members of ``auditors`` see every record and the integrity state; everyone else sees
their own records and sessions; holders of an approver role see the approval requests
they could vote on. Pages only render what these methods return.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from policies.audit.anchors import AnchorState, AnchorStore
from policies.audit.browse import (
    AuditBrowser,
    BrowseFilter,
    BucketCount,
    ChainEvent,
    Cursor,
    Page,
)
from policies.errors import (
    AccessDenied,
    ArtifactError,
    AuditIntegrityError,
    AuditUnavailable,
    ExecGateError,
    UnknownPrincipal,
)
from policies.ports import (
    ApprovalRecord,
    ApprovalState,
    ArtifactInfo,
    ArtifactStore,
    AuditStore,
    ExecRecord,
    SessionRecord,
    VerifyReport,
)
from policies.rules.engine import is_approver
from policies.rules.holder import PolicyHolder
from policies.types import ApprovalId, ApprovalSpec, AuditId, Principal, SessionId

logger = logging.getLogger(__name__)

AUDITOR_ROLE = "auditors"
EXPORT_BATCH = 500  # records read from the database at a time for an export


class RecordNotFound(ExecGateError):
    code = "not_found"
    default_message = "no such record"


@runtime_checkable
class BrowsableAudit(Protocol):
    """An audit store the console can page through (the SQL store)."""

    def browser(self) -> AuditBrowser: ...


@runtime_checkable
class NonceStore(Protocol):
    """An audit store that keeps one-time sign-in values (the SQL store)."""

    async def claim_nonce(self, key: str, ttl: float) -> bool: ...

    async def put_nonce(self, key: str, value: str, ttl: float) -> None: ...

    async def take_nonce(self, key: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking, and what the policy lets them see."""

    principal: Principal
    roles: frozenset[str]
    auditor: bool
    approver: bool

    @property
    def name(self) -> str:
        return str(self.principal)


@dataclass(frozen=True, slots=True)
class ArtifactView:
    info: ArtifactInfo
    link: str | None  # a fresh expiring link; None when the store cannot make one


@dataclass(frozen=True, slots=True)
class ExecDetail:
    record: ExecRecord
    approval: ApprovalRecord | None
    artifacts: tuple[ArtifactView, ...]
    events: tuple[ChainEvent, ...]
    # Whether the last signed checkpoint covers every event of this record.
    vouched: bool | None
    checkpoint_last: int | None


@dataclass(frozen=True, slots=True)
class Activity:
    counts: tuple[BucketCount, ...]
    top_denied: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Transcript:
    session: SessionRecord
    records: tuple[ExecRecord, ...]


@dataclass(frozen=True, slots=True)
class Integrity:
    checkpoint_last: int | None
    checkpoint_at: dt.datetime | None
    checkpoint_error: str | None
    head_seq: int
    last_report: VerifyReport | None
    last_verified_at: dt.datetime | None
    # Signed checkpoints published to the artifact store, newest first (None: anchors
    # are not configured), how many there are, and why they could not be read.
    anchors: tuple[AnchorState, ...] | None = None
    anchors_total: int = 0
    anchors_error: str | None = None


class ReviewService:
    """The read side of the audit log, one principal at a time."""

    def __init__(
        self,
        *,
        policies: PolicyHolder,
        audit: AuditStore,
        artifacts: ArtifactStore | None,
        resolve: Callable[[Principal], Awaitable[Principal]],
        clock: Callable[[], dt.datetime],
        link_ttl_seconds: float,
        anchors: AnchorStore | None = None,
    ) -> None:
        self._policies = policies
        self._anchors = anchors
        self._audit = audit
        self._browser = audit.browser() if isinstance(audit, BrowsableAudit) else None
        self._artifacts = artifacts
        self._resolve = resolve
        self._clock = clock
        self._link_ttl = link_ttl_seconds
        self._last_report: tuple[VerifyReport, dt.datetime] | None = None

    # ------------------------------------------------------------------ sign-in
    # One-time values of console sign-in live in the audit database, which every
    # replica shares: each is accepted once, on any replica, also after a restart.

    @property
    def _nonces(self) -> NonceStore:
        if not isinstance(self._audit, NonceStore):
            raise AuditUnavailable("this audit store cannot keep sign-in nonces", kind="no_nonces")
        return self._audit

    async def use_nonce(self, key: str, ttl: float) -> bool:
        """Use the one-time ``key`` (kept ``ttl`` seconds); False when it was used before.

        Raises: AuditUnavailable.
        """
        return await self._nonces.claim_nonce(key, ttl)

    async def hold_state(self, key: str, value: str, ttl: float) -> None:
        """Keep ``value`` (a sign-in in progress) under ``key`` for one ``take_state``.

        Raises: AuditUnavailable.
        """
        await self._nonces.put_nonce(key, value, ttl)

    async def take_state(self, key: str) -> str | None:
        """The value held under ``key``, once; None when taken, expired or never held.

        Raises: AuditUnavailable.
        """
        return await self._nonces.take_nonce(key)

    @property
    def browser(self) -> AuditBrowser:
        if self._browser is None:
            raise AuditUnavailable("this audit store cannot be browsed", kind="not_browsable")
        return self._browser

    async def viewer(self, principal: Principal) -> Viewer:
        """Raises: UnknownPrincipal when the policy names no role for ``principal``."""
        principal = await self._resolve(principal)
        policy = self._policies.current()
        roles = policy.roles_of(principal)
        if not roles:
            raise UnknownPrincipal()
        approver = any(
            is_approver(policy, principal, rule.approval)
            for rule in policy.rules
            if rule.approval is not None
        )
        return Viewer(principal, roles, AUDITOR_ROLE in roles, approver)

    def _scope(self, viewer: Viewer, flt: BrowseFilter) -> BrowseFilter:
        return flt if viewer.auditor else flt.narrowed_to(viewer.name)

    def _may_see(self, viewer: Viewer, owner: str) -> bool:
        return viewer.auditor or owner == viewer.name

    # ------------------------------------------------------------------ activity

    async def activity_page(
        self,
        principal: Principal,
        flt: BrowseFilter,
        *,
        after: Cursor | None = None,
        limit: int = 50,
    ) -> tuple[Viewer, Page]:
        """The records ``principal`` may see under ``flt``, newest first.

        Raises: UnknownPrincipal, AuditUnavailable.
        """
        viewer = await self.viewer(principal)
        page = await self.browser.page(self._scope(viewer, flt), after=after, limit=limit)
        return viewer, page

    async def activity_chart(
        self,
        principal: Principal,
        flt: BrowseFilter,
        starts: Sequence[dt.datetime],
        end: dt.datetime,
    ) -> Activity:
        """Execs per bucket (from each of ``starts`` to the next, the last to ``end``)
        and effect, and the top denying rules, over what the principal may see.

        Raises: UnknownPrincipal, AuditUnavailable.
        """
        viewer = await self.viewer(principal)
        scoped = self._scope(viewer, flt)
        counts = await self.browser.counts(scoped, starts, end)
        top = await self.browser.top_denied_rules(scoped)
        return Activity(tuple(counts), tuple(top))

    async def export(
        self, principal: Principal, flt: BrowseFilter, *, batch: int = EXPORT_BATCH
    ) -> AsyncIterator[tuple[ExecRecord, ...]]:
        """Every record of ``flt`` the principal may see, newest first, ``batch`` at a
        time: each batch is read when the one before was taken, so an export of any size
        holds one batch in memory. Who may see what is decided before this returns.

        Raises: UnknownPrincipal (here); AuditUnavailable (here, or while iterating).
        """
        viewer = await self.viewer(principal)
        scoped = self._scope(viewer, flt)
        browser = self.browser

        async def batches() -> AsyncIterator[tuple[ExecRecord, ...]]:
            async for page in browser.batches(scoped, batch=batch):
                yield page.records

        return batches()

    # ------------------------------------------------------------------ one exec

    async def exec_detail(self, principal: Principal, audit_id: AuditId) -> ExecDetail:
        """One record with its approval, fresh artifact links and chain events, for its
        owner, an auditor, or an approver of its approval request.

        Raises: RecordNotFound, AccessDenied (another principal's record, for anyone
        else), UnknownPrincipal, AuditUnavailable.
        """
        viewer = await self.viewer(principal)
        try:
            record = await self._audit.get_exec(audit_id)
        except KeyError:
            raise RecordNotFound() from None
        approval = await self._approval_of(record)
        # Approvers of a request see what they were asked to approve, and what it did.
        approving = approval is not None and is_approver(
            self._policies.current(),
            viewer.principal,
            ApprovalSpec(approval.approver_roles, approval.threshold),
        )
        if not (self._may_see(viewer, record.intent.principal) or approving):
            raise AccessDenied("you may only see your own records", kind="not_yours")
        artifacts = await self._artifact_views(record)
        subjects = [str(audit_id)] + ([str(approval.approval_id)] if approval else [])
        events = tuple(await self.browser.events_of(subjects))
        last = await self._checkpoint_last()
        vouched = None if last is None or not events else events[-1].seq <= last
        return ExecDetail(record, approval, artifacts, events, vouched, last)

    async def _approval_of(self, record: ExecRecord) -> ApprovalRecord | None:
        approval_id = record.intent.approval_id
        if approval_id is None:
            for candidate in await self._audit.list_approvals(None):
                if candidate.audit_id == record.audit_id:
                    return candidate
            return None
        return await self._audit.get_approval(approval_id)

    async def _artifact_views(self, record: ExecRecord) -> tuple[ArtifactView, ...]:
        if record.outcome is None:
            return ()
        views = []
        for info in record.outcome.artifacts:
            link = None
            if self._artifacts is not None:
                try:
                    link = await self._artifacts.link(info.key, ttl_seconds=self._link_ttl)
                except ArtifactError:
                    logger.warning("no link for artifact", extra={"audit_id": record.audit_id})
            views.append(ArtifactView(info, link))
        return tuple(views)

    async def _checkpoint_last(self) -> int | None:
        try:
            found = await self.browser.checkpoint()
        except AuditIntegrityError:
            return None
        return None if found is None else found[0].last

    # ------------------------------------------------------------------ sessions

    async def transcript(self, principal: Principal, session_id: SessionId) -> Transcript:
        """A session's commands in order, for its owner or an auditor.

        Raises: RecordNotFound, AccessDenied, UnknownPrincipal, AuditUnavailable.
        """
        viewer = await self.viewer(principal)
        try:
            session = await self._audit.get_session(session_id)
        except KeyError:
            raise RecordNotFound() from None
        if not self._may_see(viewer, session.principal):
            raise AccessDenied("you may only see your own sessions", kind="not_yours")
        pages = await self.browser.all_matching(BrowseFilter(session_id=str(session_id)))
        records = [r for page in pages for r in page.records]
        records.reverse()
        return Transcript(session, tuple(records))

    # ------------------------------------------------------------------ approvals

    async def approval_queue(self, principal: Principal) -> tuple[Viewer, list[ApprovalRecord]]:
        """Pending requests the principal could vote on, and their own pending requests.

        Raises: UnknownPrincipal, AuditUnavailable.
        """
        viewer = await self.viewer(principal)
        await self._audit.expire_approvals(self._clock())
        policy = self._policies.current()
        pending = await self._audit.list_approvals(ApprovalState.PENDING)
        shown = [
            a
            for a in pending
            if a.requester == viewer.name
            or is_approver(policy, viewer.principal, ApprovalSpec(a.approver_roles, a.threshold))
        ]
        return viewer, shown

    async def approval(self, principal: Principal, approval_id: ApprovalId) -> ApprovalRecord:
        """One approval request, for its requester, an approver of it or an auditor.

        Raises: RecordNotFound, AccessDenied, UnknownPrincipal, AuditUnavailable.
        """
        viewer = await self.viewer(principal)
        try:
            record = await self._audit.get_approval(approval_id)
        except ExecGateError as exc:
            if exc.code == "approval_not_found":
                raise RecordNotFound() from None
            raise
        spec = ApprovalSpec(record.approver_roles, record.threshold)
        allowed = self._may_see(viewer, record.requester) or is_approver(
            self._policies.current(), viewer.principal, spec
        )
        if not allowed:
            raise AccessDenied("you may not see this approval request", kind="not_yours")
        return record

    # ------------------------------------------------------------------ integrity

    async def integrity(self, principal: Principal) -> Integrity:
        """Checkpoint, chain head and the last verification, for auditors.

        Raises: AccessDenied, UnknownPrincipal, AuditUnavailable.
        """
        viewer = await self.viewer(principal)
        self._require_auditor(viewer)
        last: int | None = None
        at: dt.datetime | None = None
        error: str | None = None
        try:
            found = await self.browser.checkpoint()
            if found is not None:
                last, at = found[0].last, found[1]
        except AuditIntegrityError as exc:
            error = exc.safe_message
        head = await self.browser.head_seq()
        report, verified_at = self._last_report or (None, None)
        anchors: tuple[AnchorState, ...] | None = None
        total, anchors_error = 0, None
        if self._anchors is not None:
            try:
                states, total = await self.browser.anchor_states(self._anchors)
                anchors = tuple(states)
            except ArtifactError as exc:
                anchors, anchors_error = (), exc.safe_message
        return Integrity(last, at, error, head, report, verified_at, anchors, total, anchors_error)

    async def verify_now(self, principal: Principal) -> VerifyReport:
        """Walk the whole chain now (auditors only). Raises: AccessDenied,
        UnknownPrincipal, AuditUnavailable."""
        viewer = await self.viewer(principal)
        self._require_auditor(viewer)
        report = await self._audit.verify()
        self._last_report = (report, self._clock())
        return report

    @staticmethod
    def _require_auditor(viewer: Viewer) -> None:
        if not viewer.auditor:
            raise AccessDenied(f"this needs the {AUDITOR_ROLE} role", kind="not_auditor")
