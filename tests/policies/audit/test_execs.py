"""Exec sessions: intents before the run, outcomes after, and the queries over them."""

from __future__ import annotations

import datetime as dt

import pytest

from policies.audit import SqlAuditStore
from policies.audit.ids import new_id
from policies.errors import DuplicateRequest, ExecNotFound
from policies.ports import AuditFilter, ExecOutcome, ExecStatus
from policies.types import AuditId, SessionId
from tests.policies.audit.support import INTENT, intent

UTC = dt.UTC


async def test_intent_reads_back_as_running_without_an_outcome(
    audit_store: SqlAuditStore,
) -> None:
    audit_id = await audit_store.record_intent(INTENT)

    record = await audit_store.get_exec(audit_id)

    assert record.audit_id == audit_id
    assert audit_id.startswith("ex_")
    assert record.intent == INTENT
    assert record.outcome is None
    assert record.created_at.tzinfo is not None


async def test_outcome_reads_back_with_every_field(audit_store: SqlAuditStore) -> None:
    audit_id = await audit_store.record_intent(intent(command_text="ls -l /tmp"))
    start = dt.datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)
    outcome = ExecOutcome(
        status=ExecStatus.COMPLETED,
        exit_code=2,
        started_at=start,
        ended_at=start + dt.timedelta(seconds=1.5),
        stdout_bytes=10,
        stderr_bytes=1 << 40,
        output_sha256="ab" * 32,
        artifact_keys=("k/1", "k/2"),
        approvers=("local:bob",),
        error="exit status 2",
    )

    await audit_store.record_outcome(audit_id, outcome)
    record = await audit_store.get_exec(audit_id)

    assert record.outcome == outcome
    assert record.intent.status is ExecStatus.COMPLETED


async def test_times_in_other_zones_are_stored_as_utc(audit_store: SqlAuditStore) -> None:
    audit_id = await audit_store.record_intent(INTENT)
    tokyo = dt.timezone(dt.timedelta(hours=9))
    start = dt.datetime(2026, 11, 27, 19, 0, tzinfo=tokyo)

    await audit_store.record_outcome(
        audit_id, ExecOutcome(status=ExecStatus.TIMEOUT, started_at=start)
    )
    record = await audit_store.get_exec(audit_id)

    assert record.outcome is not None
    assert record.outcome.started_at == start
    assert record.outcome.started_at.utcoffset() == dt.timedelta(0)


async def test_unusual_argv_text_survives_the_round_trip(audit_store: SqlAuditStore) -> None:
    argv = ("printf", "%s\n", "naïve ✓", "tab\there", "\udcff")
    audit_id = await audit_store.record_intent(intent(argv=argv))

    assert (await audit_store.get_exec(audit_id)).intent.argv == argv
    assert (await audit_store.verify()).ok


async def test_unknown_exec_is_exec_not_found(audit_store: SqlAuditStore) -> None:
    with pytest.raises(ExecNotFound):
        await audit_store.get_exec(AuditId("ex_missing"))
    with pytest.raises(ExecNotFound):
        await audit_store.record_outcome(
            AuditId("ex_missing"), ExecOutcome(status=ExecStatus.FAILED)
        )
    assert (await audit_store.verify()).rows_checked == 0


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        pytest.param(AuditFilter(), ["c", "b", "a"], id="all-newest-first"),
        pytest.param(AuditFilter(limit=2), ["c", "b"], id="limit"),
        pytest.param(AuditFilter(principal="local:bob"), ["b"], id="principal"),
        pytest.param(AuditFilter(target="other-fn/c-9"), ["c"], id="target"),
        pytest.param(AuditFilter(function="demo-api"), ["b", "a"], id="function"),
        pytest.param(AuditFilter(effect="deny"), ["b"], id="effect"),
        pytest.param(AuditFilter(status="completed"), ["a"], id="status"),
        pytest.param(AuditFilter(session_id="se_1"), ["c"], id="session"),
        pytest.param(AuditFilter(target="demo-api"), [], id="target-is-exact"),
    ],
)
async def test_list_filters_execs(
    audit_store: SqlAuditStore, flt: AuditFilter, expected: list[str]
) -> None:
    ids = {
        "a": await audit_store.record_intent(intent(reason="a")),
        "b": await audit_store.record_intent(
            intent(reason="b", principal="local:bob", effect="deny", status=ExecStatus.DENIED)
        ),
        "c": await audit_store.record_intent(
            intent(
                reason="c",
                target="other-fn/c-9",
                function="other-fn",
                session_id=SessionId("se_1"),
            )
        ),
    }
    await audit_store.record_outcome(ids["a"], ExecOutcome(status=ExecStatus.COMPLETED))

    found = await audit_store.list_execs(flt)

    assert [r.intent.reason for r in found] == expected


async def test_list_since_is_inclusive_and_until_exclusive(audit_store: SqlAuditStore) -> None:
    first = await audit_store.record_intent(intent(reason="first"))
    second = await audit_store.record_intent(intent(reason="second"))
    t1 = (await audit_store.get_exec(first)).created_at
    t2 = (await audit_store.get_exec(second)).created_at

    since = await audit_store.list_execs(AuditFilter(since=t2))
    until = await audit_store.list_execs(AuditFilter(until=t2))

    assert [r.audit_id for r in since] == [second]
    assert [r.audit_id for r in until] == ([first] if t1 < t2 else [])


async def test_request_key_finds_the_exec_recorded_with_it_and_refuses_a_second(
    audit_store: SqlAuditStore,
) -> None:
    first = await audit_store.record_intent(intent(request_key="slack:Ev1"))
    with pytest.raises(DuplicateRequest) as refused:
        await audit_store.record_intent(intent(request_key="slack:Ev1"))

    assert refused.value.fields["audit_id"] == first
    assert await audit_store.find_by_request_key("slack:Ev1") == first
    assert await audit_store.find_by_request_key("slack:Ev2") is None


def test_ids_are_short_url_safe_and_sort_by_time() -> None:
    ids = [new_id("ex_") for _ in range(50)]

    assert all(len(i) == 22 and i.replace("_", "").isalnum() for i in ids)
    assert len(set(ids)) == len(ids)
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)
