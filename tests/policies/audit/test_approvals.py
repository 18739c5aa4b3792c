"""Approval requests: distinct votes up to a threshold, deny, expiry, claim exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from policies.audit import SqlAuditStore
from policies.errors import (
    ApprovalAlreadyDecided,
    ApprovalExpired,
    ApprovalNotFound,
    ExecNotFound,
    SelfApprovalRefused,
)
from policies.ports import ApprovalRecord, ApprovalRequest, ApprovalState, ExecStatus
from policies.types import ApprovalId, AuditId
from tests.policies.audit.support import INTENT, intent


async def _request(
    store: SqlAuditStore, *, threshold: int = 2, ttl: float = 600.0
) -> ApprovalRecord:
    audit_id = await store.record_intent(intent(status=ExecStatus.PENDING_APPROVAL))
    return await store.create_approval(
        ApprovalRequest(
            audit_id=audit_id,
            request_hash="ab" * 32,
            requester=INTENT.principal,
            target=INTENT.target,
            argv=("tcpdump", "-c", "10"),
            reason="capture",
            rule_id="captures",
            approver_roles=("sre", "lead"),
            threshold=threshold,
            ttl_seconds=ttl,
            surface="slack",
            context={"channel": "C123", "thread": "1.2"},
        )
    )


async def test_new_request_is_pending_with_everything_stored(audit_store: SqlAuditStore) -> None:
    created = await _request(audit_store)

    fetched = await audit_store.get_approval(created.approval_id)

    assert fetched == created
    assert created.approval_id.startswith("ap_")
    assert created.state is ApprovalState.PENDING
    assert created.argv == ("tcpdump", "-c", "10")
    assert created.approver_roles == ("sre", "lead")
    assert created.context == {"channel": "C123", "thread": "1.2"}
    assert created.expires_at - created.created_at == dt.timedelta(seconds=600)
    assert created.approvals == ()


async def test_threshold_of_distinct_approvers_approves(audit_store: SqlAuditStore) -> None:
    request = await _request(audit_store, threshold=2)

    first = await audit_store.add_approval_vote(request.approval_id, "local:bob", True)
    again = await audit_store.add_approval_vote(request.approval_id, "local:bob", True)
    second = await audit_store.add_approval_vote(request.approval_id, "local:carol", True)

    assert (first.state, first.approvals) == (ApprovalState.PENDING, ("local:bob",))
    assert (again.state, again.approvals) == (ApprovalState.PENDING, ("local:bob",))
    assert (second.state, second.approvals) == (
        ApprovalState.APPROVED,
        ("local:bob", "local:carol"),
    )
    assert (await audit_store.verify()).ok


async def test_deny_by_any_approver_denies(audit_store: SqlAuditStore) -> None:
    request = await _request(audit_store, threshold=2)
    await audit_store.add_approval_vote(request.approval_id, "local:bob", True)

    denied = await audit_store.add_approval_vote(request.approval_id, "local:carol", False)

    assert (denied.state, denied.denied_by) == (ApprovalState.DENIED, "local:carol")
    with pytest.raises(ApprovalAlreadyDecided):
        await audit_store.add_approval_vote(request.approval_id, "local:dave", True)
    assert (await audit_store.verify()).ok


async def test_approver_who_approved_can_still_deny(audit_store: SqlAuditStore) -> None:
    request = await _request(audit_store, threshold=2)
    await audit_store.add_approval_vote(request.approval_id, "local:bob", True)

    denied = await audit_store.add_approval_vote(request.approval_id, "local:bob", False)

    assert (denied.state, denied.denied_by) == (ApprovalState.DENIED, "local:bob")


async def test_requester_cannot_approve_their_own_request(audit_store: SqlAuditStore) -> None:
    request = await _request(audit_store, threshold=1)

    with pytest.raises(SelfApprovalRefused):
        await audit_store.add_approval_vote(request.approval_id, INTENT.principal, True)

    assert (await audit_store.get_approval(request.approval_id)).state is ApprovalState.PENDING


async def test_vote_after_expiry_is_refused_and_marks_the_request_expired(
    audit_store: SqlAuditStore,
) -> None:
    # One microsecond of life: over by the time the next transaction starts.
    request = await _request(audit_store, ttl=1e-6)

    with pytest.raises(ApprovalExpired):
        await audit_store.add_approval_vote(request.approval_id, "local:bob", True)

    assert (await audit_store.get_approval(request.approval_id)).state is ApprovalState.EXPIRED
    with pytest.raises(ApprovalExpired):
        await audit_store.add_approval_vote(request.approval_id, "local:bob", True)
    assert (await audit_store.verify()).ok


async def test_expire_approvals_moves_only_overdue_pending_requests(
    audit_store: SqlAuditStore,
) -> None:
    short = await _request(audit_store, ttl=60)
    long = await _request(audit_store, ttl=3600)
    decided = await _request(audit_store, ttl=60, threshold=1)
    await audit_store.add_approval_vote(decided.approval_id, "local:bob", True)

    later = short.created_at + dt.timedelta(seconds=120)
    assert await audit_store.expire_approvals(later) == 1
    assert await audit_store.expire_approvals(later) == 0

    states = {r.approval_id: r.state for r in await audit_store.list_approvals()}
    assert states == {
        short.approval_id: ApprovalState.EXPIRED,
        long.approval_id: ApprovalState.PENDING,
        decided.approval_id: ApprovalState.APPROVED,
    }
    pending = await audit_store.list_approvals(ApprovalState.PENDING)
    assert [r.approval_id for r in pending] == [long.approval_id]


async def test_claim_moves_approved_to_executed_and_the_exec_to_running(
    audit_store: SqlAuditStore,
) -> None:
    request = await _request(audit_store, threshold=1)
    await audit_store.add_approval_vote(request.approval_id, "local:bob", True)

    claimed = await audit_store.claim_approved(request.approval_id)

    assert claimed is not None and claimed.state is ApprovalState.EXECUTED
    assert claimed.approvals == ("local:bob",)
    exec_record = await audit_store.get_exec(request.audit_id)
    assert exec_record.intent.status is ExecStatus.RUNNING
    assert await audit_store.claim_approved(request.approval_id) is None
    assert (await audit_store.verify()).ok


async def test_pending_request_cannot_be_claimed(audit_store: SqlAuditStore) -> None:
    request = await _request(audit_store)

    assert await audit_store.claim_approved(request.approval_id) is None


async def test_two_stores_claiming_at_once_claim_exactly_once(
    audit_store: SqlAuditStore, other_store: SqlAuditStore
) -> None:
    requests = [await _request(audit_store, threshold=1) for _ in range(5)]
    for request in requests:
        await audit_store.add_approval_vote(request.approval_id, "local:bob", True)

    claims = await asyncio.gather(
        *(
            store.claim_approved(request.approval_id)
            for request in requests
            for store in (audit_store, other_store, audit_store, other_store)
        )
    )
    await other_store.aclose()

    for i, request in enumerate(requests):
        won = [c for c in claims[4 * i : 4 * i + 4] if c is not None]
        assert [c.approval_id for c in won] == [request.approval_id]
    assert (await audit_store.verify()).ok


async def test_concurrent_votes_from_two_stores_are_all_counted(
    audit_store: SqlAuditStore, other_store: SqlAuditStore
) -> None:
    request = await _request(audit_store, threshold=3)
    approvers = ["local:bob", "local:carol", "local:dave"]
    results = await asyncio.gather(
        audit_store.add_approval_vote(request.approval_id, approvers[0], True),
        other_store.add_approval_vote(request.approval_id, approvers[1], True),
        audit_store.add_approval_vote(request.approval_id, approvers[2], True),
        other_store.add_approval_vote(request.approval_id, approvers[0], True),
        return_exceptions=True,
    )

    # Bob's second vote either changed nothing or came after the threshold was met.
    assert all(isinstance(r, ApprovalRecord | ApprovalAlreadyDecided) for r in results)
    final = await audit_store.get_approval(request.approval_id)
    assert final.state is ApprovalState.APPROVED
    assert sorted(final.approvals) == approvers


async def test_unknown_approval_is_not_found(audit_store: SqlAuditStore) -> None:
    missing = ApprovalId("ap_missing")

    for call in (
        audit_store.get_approval(missing),
        audit_store.add_approval_vote(missing, "local:bob", True),
        audit_store.claim_approved(missing),
    ):
        with pytest.raises(ApprovalNotFound):
            await call


@pytest.mark.parametrize(
    ("threshold", "ttl"),
    [pytest.param(0, 60.0, id="zero-threshold"), pytest.param(1, 0.0, id="zero-ttl")],
)
async def test_request_needs_a_threshold_and_a_ttl(
    audit_store: SqlAuditStore, threshold: int, ttl: float
) -> None:
    with pytest.raises(ValueError):
        await _request(audit_store, threshold=threshold, ttl=ttl)


async def test_request_for_an_unknown_exec_is_exec_not_found(audit_store: SqlAuditStore) -> None:
    with pytest.raises(ExecNotFound):
        await audit_store.create_approval(
            ApprovalRequest(
                audit_id=AuditId("ex_missing"),
                request_hash="",
                requester="local:alice",
                target=INTENT.target,
                argv=(),
                reason="",
                rule_id="r",
                approver_roles=(),
                threshold=1,
                ttl_seconds=60,
                surface="cli",
                context={},
            )
        )
