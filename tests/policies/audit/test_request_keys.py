"""A request key (a Slack delivery's key) is recorded once: two deliveries of one
request recorded at the same moment by two replicas on one database give one intent."""

from __future__ import annotations

import asyncio

import pytest

from policies.audit import SqlAuditStore
from policies.errors import DuplicateRequest
from policies.ports import AuditFilter
from tests.policies.audit.support import intent

KEY = "slack:cmd:trigger-42"


async def test_two_replicas_recording_one_request_key_at_once_record_one_intent(
    audit_store: SqlAuditStore, other_store: SqlAuditStore
) -> None:
    results = await asyncio.gather(
        audit_store.record_intent(intent(request_key=KEY)),
        other_store.record_intent(intent(request_key=KEY)),
        return_exceptions=True,
    )

    recorded = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, DuplicateRequest)]
    assert len(recorded) == 1 and len(refused) == 1, results
    assert refused[0].fields["audit_id"] == recorded[0]
    rows = await audit_store.list_execs(AuditFilter())
    assert [r.audit_id for r in rows] == recorded
    assert (await audit_store.verify()).ok


async def test_intents_without_a_key_or_with_other_keys_are_all_recorded(
    audit_store: SqlAuditStore,
) -> None:
    await audit_store.record_intent(intent(request_key=KEY))
    await audit_store.record_intent(intent(request_key=None))
    await audit_store.record_intent(intent(request_key=None))
    await audit_store.record_intent(intent(request_key=KEY + "-other"))
    with pytest.raises(DuplicateRequest):
        await audit_store.record_intent(intent(request_key=KEY))

    assert len(await audit_store.list_execs(AuditFilter())) == 4
