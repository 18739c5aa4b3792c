"""Writes that arrive together commit together; an outcome is visible to every reader
once recorded; on PostgreSQL an intent's commit waits for the disk and an outcome's does
not."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from policies.audit import SqlAuditStore
from policies.errors import DuplicateRequest, ExecNotFound
from policies.ports import ExecOutcome, ExecStatus, RateCheck
from policies.types import AuditId
from tests.policies.audit.support import INTENT, execute, intent, scalar

DONE = ExecOutcome(status=ExecStatus.COMPLETED, exit_code=0)
REFUSAL = intent(effect="deny", status=ExecStatus.DENIED, decision_reason="rate limit reached")

# Every change to exec_sessions notes the synchronous_commit its transaction ran with.
COMMIT_MODES = (
    "CREATE TABLE commit_modes (audit_id text, op text, mode text)",
    "CREATE FUNCTION note_commit_mode() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO commit_modes VALUES (NEW.id, TG_OP, current_setting('synchronous_commit')); "
    "RETURN NEW; END $$",
    "CREATE TRIGGER note_commit_mode AFTER INSERT OR UPDATE ON exec_sessions "
    "FOR EACH ROW EXECUTE FUNCTION note_commit_mode()",
)


def postgresql_only(url: str) -> None:
    if not url.startswith("postgresql"):
        pytest.skip("PostgreSQL's commit modes and transaction ids")


async def modes(url: str, op: str, ids: list[AuditId]) -> set[str]:
    found = set()
    for audit_id in ids:
        sql = "SELECT string_agg(mode, ',') FROM commit_modes WHERE audit_id = :id AND op = :op"
        found.add(await scalar(url, sql, {"id": audit_id, "op": op}))
    return found


async def test_an_outcome_is_read_by_another_connection_as_soon_as_it_is_recorded(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    status = "SELECT status FROM exec_sessions WHERE id = :id"
    audit_id = await audit_store.record_intent(INTENT)
    assert await scalar(migrated_url, status, {"id": audit_id}) == "running"

    await audit_store.record_outcome(audit_id, DONE)

    assert await scalar(migrated_url, status, {"id": audit_id}) == "completed"


async def test_intents_commit_waiting_for_the_disk_and_outcomes_without_waiting(
    audit_store: SqlAuditStore, migrated_url: str
) -> None:
    postgresql_only(migrated_url)
    for statement in COMMIT_MODES:
        await execute(migrated_url, statement)

    alone = [await audit_store.record_intent(INTENT)]
    await audit_store.record_outcome(alone[0], DONE)
    together = list(await asyncio.gather(*(audit_store.record_intent(INTENT) for _ in range(12))))
    await asyncio.gather(*(audit_store.record_outcome(a, DONE) for a in together))
    refused = await asyncio.gather(
        *(audit_store.record_outcome(a, DONE) for a in together[:3]),
        audit_store.record_outcome(AuditId("ex_missing"), DONE),  # runs them as bodies
        return_exceptions=True,
    )

    assert [type(r) for r in refused].count(ExecNotFound) == 1
    ids = alone + together
    assert await modes(migrated_url, "INSERT", ids) == {"on"}
    assert await modes(migrated_url, "UPDATE", alone + together[3:]) == {"off"}
    assert await modes(migrated_url, "UPDATE", together[:3]) == {"off,off"}


async def test_writes_arriving_together_commit_in_one_transaction(
    audit_store: SqlAuditStore, other_store: SqlAuditStore, migrated_url: str
) -> None:
    postgresql_only(migrated_url)
    xids = "SELECT count(DISTINCT xmin::text) FROM {} WHERE seq > :after"
    await audit_store.record_intent(INTENT)
    await other_store.record_intent(INTENT)  # the first store's known head is stale now

    intents = await asyncio.gather(*(audit_store.record_intent(INTENT) for _ in range(20)))
    await asyncio.gather(*(audit_store.record_outcome(a, DONE) for a in intents))

    events = xids.format("audit_events")
    assert await scalar(migrated_url, events, {"after": 2}) == 2  # the intents, the outcomes
    assert await scalar(migrated_url, events, {"after": 0}) == 4
    report = await audit_store.verify()
    assert (report.ok, report.rows_checked) == (True, 42)


async def test_each_failing_write_of_a_group_is_told_why_and_the_others_commit_once(
    audit_store: SqlAuditStore,
) -> None:
    rate = RateCheck(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1), 4, REFUSAL)
    first = await audit_store.record_intent(intent(request_key="slack:evt:1"))
    running = await audit_store.record_intent(INTENT)

    results = await asyncio.gather(
        *(audit_store.record_rated_intent(INTENT, rate) for _ in range(2)),
        audit_store.record_intent(intent(request_key="slack:evt:1")),
        audit_store.record_outcome(running, DONE),
        audit_store.record_intent(intent(request_key="slack:evt:2")),
        audit_store.record_outcome(AuditId("ex_missing"), DONE),
        *(audit_store.record_rated_intent(INTENT, rate) for _ in range(2)),
        return_exceptions=True,
    )

    rated = [r for r in results[:2] + results[6:] if isinstance(r, tuple)]
    assert [limited for _, limited in rated] == [False, False, True, True]
    assert isinstance(results[2], DuplicateRequest) and results[2].fields["audit_id"] == first
    assert results[3] is None and isinstance(results[4], str)
    assert isinstance(results[5], ExecNotFound)
    assert (await audit_store.get_exec(running)).outcome == DONE
    report = await audit_store.verify()
    assert (report.ok, report.rows_checked) == (True, 8)
