"""Writes that arrive one at a time (an exec's intent, then its outcome) go to PostgreSQL
as single statements hashed on the head the store last wrote. Another replica writing
in between makes that head stale: the chain, the rate limits, the request keys and the
refusals stay exactly what one transaction per write gives."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from policies.audit import SqlAuditStore
from policies.errors import DuplicateRequest, ExecNotFound
from policies.ports import AuditFilter, ExecOutcome, ExecStatus, RateCheck
from policies.types import AuditId
from tests.policies.audit.support import INTENT, execute, intent, scalar

REFUSAL = intent(effect="deny", status=ExecStatus.DENIED, decision_reason="rate limit reached")
DONE = ExecOutcome(status=ExecStatus.COMPLETED, exit_code=0)


def per_minute(limit: int) -> RateCheck:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60)
    return RateCheck(since=since, limit=limit, refusal=REFUSAL)


async def test_two_stores_taking_turns_keep_one_valid_chain(
    audit_store: SqlAuditStore, other_store: SqlAuditStore
) -> None:
    for _ in range(6):
        for store in (audit_store, other_store, other_store, audit_store):
            audit_id = await store.record_intent(INTENT)
            await store.record_outcome(audit_id, DONE)

    report = await audit_store.verify()

    assert (report.ok, report.rows_checked) == (True, 48)
    records = await audit_store.list_execs(AuditFilter(limit=100))
    assert [r.outcome and r.outcome.status for r in records] == [ExecStatus.COMPLETED] * 24


async def test_two_stores_each_sending_one_request_at_a_time_never_exceed_the_rate(
    audit_store: SqlAuditStore, other_store: SqlAuditStore
) -> None:
    rate = per_minute(7)

    async def one_at_a_time(store: SqlAuditStore) -> list[bool]:
        return [(await store.record_rated_intent(INTENT, rate))[1] for _ in range(10)]

    results = await asyncio.gather(one_at_a_time(audit_store), one_at_a_time(other_store))

    assert sum(not limited for run in results for limited in run) == 7
    records = await audit_store.list_execs(AuditFilter(limit=100))
    assert sorted(r.intent.effect for r in records) == ["allow"] * 7 + ["deny"] * 13
    assert (await audit_store.verify()).ok


async def test_a_request_key_recorded_by_another_store_is_refused_with_its_exec(
    audit_store: SqlAuditStore, other_store: SqlAuditStore
) -> None:
    await other_store.record_intent(INTENT)  # the other store knows a head, now stale
    first = await audit_store.record_intent(intent(request_key="slack:evt:1"))

    with pytest.raises(DuplicateRequest) as refused:
        await other_store.record_intent(intent(request_key="slack:evt:1"))

    assert refused.value.fields["audit_id"] == first
    second = await other_store.record_intent(intent(request_key="slack:evt:2"))
    with pytest.raises(DuplicateRequest):
        await audit_store.record_intent(intent(request_key="slack:evt:2"))
    rows = await audit_store.list_execs(AuditFilter())
    assert {r.audit_id for r in rows} >= {first, second} and len(rows) == 3
    assert (await audit_store.verify()).ok


async def test_an_outcome_for_no_such_exec_is_refused_and_writes_nothing(
    audit_store: SqlAuditStore,
) -> None:
    audit_id = await audit_store.record_intent(INTENT)

    with pytest.raises(ExecNotFound):
        await audit_store.record_outcome(AuditId("ex_missing"), DONE)

    await audit_store.record_outcome(audit_id, DONE)
    report = await audit_store.verify()
    assert (report.ok, report.rows_checked) == (True, 2)
    assert (await audit_store.get_exec(audit_id)).outcome == DONE


async def test_events_deleted_behind_a_stores_back_leave_no_gap_before_its_next_event(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    for _ in range(3):
        await audit_store.record_intent(INTENT)  # the store now knows event 3 as its head
    await execute(migrated_url, "DELETE FROM audit_events WHERE seq = 3")

    await audit_store.record_intent(INTENT)

    last = await scalar(migrated_url, "SELECT max(seq) FROM audit_events")
    count = await scalar(migrated_url, "SELECT count(*) FROM audit_events")
    assert (last, count) == (3, 3)
    assert not (await audit_store.verify()).ok
