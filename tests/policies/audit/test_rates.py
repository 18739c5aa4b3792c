"""Rate limits applied as the intent is written: counted and decided in the same
transaction, so concurrent requests cannot overrun the limit together."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

from policies.audit import SqlAuditStore
from policies.ports import AuditFilter, ExecStatus, RateCheck
from tests.policies.audit.support import INTENT, intent

REFUSAL = intent(effect="deny", status=ExecStatus.DENIED, decision_reason="rate limit reached")


def per_minute(limit: int) -> RateCheck:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60)
    return RateCheck(since=since, limit=limit, refusal=REFUSAL)


async def test_intents_within_the_rate_are_written_and_the_next_is_refused(
    audit_store: SqlAuditStore,
) -> None:
    written = [await audit_store.record_rated_intent(INTENT, per_minute(2)) for _ in range(3)]

    assert [limited for _, limited in written] == [False, False, True]
    records = [await audit_store.get_exec(audit_id) for audit_id, _ in written]
    assert [r.intent.effect for r in records] == ["allow", "allow", "deny"]
    assert records[2].intent.status is ExecStatus.DENIED
    assert records[2].intent.decision_reason == "rate limit reached"


async def test_refused_requests_and_other_principals_and_rules_do_not_use_up_the_rate(
    audit_store: SqlAuditStore,
) -> None:
    await audit_store.record_intent(REFUSAL)
    await audit_store.record_intent(intent(principal="local:bob"))
    await audit_store.record_intent(intent(rule_id="other"))

    _, limited = await audit_store.record_rated_intent(INTENT, per_minute(1))

    assert limited is False


async def test_requests_older_than_the_window_do_not_count(audit_store: SqlAuditStore) -> None:
    await audit_store.record_intent(INTENT)
    window_starts_later = dataclasses.replace(
        per_minute(1), since=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    )

    _, limited = await audit_store.record_rated_intent(INTENT, window_starts_later)

    assert limited is False


async def test_concurrent_requests_from_two_stores_never_exceed_the_rate(
    audit_store: SqlAuditStore, other_store: SqlAuditStore
) -> None:
    results = await asyncio.gather(
        *(store.record_rated_intent(INTENT, per_minute(7)) for store in [audit_store] * 15),
        *(store.record_rated_intent(INTENT, per_minute(7)) for store in [other_store] * 15),
    )

    assert sum(not limited for _, limited in results) == 7
    records = await audit_store.list_execs(AuditFilter(limit=100))
    assert sorted(r.intent.effect for r in records) == ["allow"] * 7 + ["deny"] * 23
    report = await audit_store.verify()
    assert (report.ok, report.rows_checked) == (True, 30)
