"""Reads check the principal who asks in the service, whatever the surface."""

from __future__ import annotations

import pytest

from policies.errors import ExecNotFound, UnknownPrincipal
from policies.ports import ApprovalState
from policies.types import Effect
from tests.policies.service.conftest import Rig, local


async def test_only_known_principals_may_list_instances(rig: Rig) -> None:
    listed = await rig.service.list_instances(local("alice"), "demo-api")
    assert [i.instance_id for i in listed] == [rig.target.instance]
    with pytest.raises(UnknownPrincipal):
        await rig.service.list_instances(local("mallory"), "demo-api")


async def test_an_audit_record_is_shown_to_its_principal_only(rig: Rig) -> None:
    ran = await rig.service.exec(rig.request("pwd"))
    assert ran.audit_id is not None

    own = await rig.service.audit_get(local("alice"), ran.audit_id)
    assert own.intent.principal == "local:alice"
    with pytest.raises(ExecNotFound):
        await rig.service.audit_get(local("bob"), ran.audit_id)
    with pytest.raises(UnknownPrincipal):
        await rig.service.audit_get(local("mallory"), ran.audit_id)


async def test_approvals_are_listed_to_their_requester_and_approvers_only(rig: Rig) -> None:
    asked = await rig.service.exec(rig.request("id"))
    assert asked.effect is Effect.APPROVE and asked.approval_id is not None

    for who in ("alice", "bob"):
        listed = await rig.service.list_approvals(local(who), ApprovalState.PENDING)
        assert [r.approval_id for r in listed] == [asked.approval_id]
    assert await rig.service.list_approvals(local("dave"), ApprovalState.PENDING) == []
    with pytest.raises(UnknownPrincipal):
        await rig.service.list_approvals(local("mallory"))
    with pytest.raises(UnknownPrincipal):
        await rig.service.get_approval(asked.approval_id, local("mallory"))
    seen = await rig.service.get_approval(asked.approval_id, local("dave"))
    assert seen.state is ApprovalState.PENDING
