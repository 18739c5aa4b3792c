"""The review service decides who sees what, whatever page or surface asks: tested on
the service over a real audit store (SQLite, or PostgreSQL in CI)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from policies.audit import SqlAuditStore, browse
from policies.audit.browse import BrowseFilter, Cursor
from policies.errors import AccessDenied, UnknownPrincipal
from policies.rules.holder import PolicyHolder
from policies.service.core import ExecService
from policies.service.intents import intent_for
from policies.types import AuditId, Decision, Effect, Principal, Surface, Target

HERE = Path(__file__).resolve().parent
ALICE = Principal.parse("local:alice")
BOB = Principal.parse("local:bob")
AUDRA = Principal.parse("local:audra")
TARGET = Target.parse("local:demo-api/c-1")


def service(store: SqlAuditStore) -> ExecService:
    return ExecService(
        policies=PolicyHolder(HERE / "policy.yaml"),
        audit=store,
        providers={},
        default_provider="local",
    )


async def record(
    store: SqlAuditStore, who: Principal, *argv: str, effect: str = "allow"
) -> AuditId:
    decision = Decision(Effect(effect), "diagnostics", "test")
    return await store.record_intent(
        intent_for(str(who), Surface.CLI, TARGET, tuple(argv), decision)
    )


async def test_a_non_auditor_sees_only_their_own_records_whatever_the_filter_asks(
    audit_store: SqlAuditStore,
) -> None:
    review = service(audit_store).review
    alices = await record(audit_store, ALICE, "echo", "a")
    bobs = await record(audit_store, BOB, "echo", "b")
    for asked in (BrowseFilter(), BrowseFilter(principal=str(BOB))):
        _, page = await review.activity_page(ALICE, asked)
        assert [r.audit_id for r in page.records] == ([alices] if asked.principal is None else [])
    # The same filter for an auditor shows Bob's record: the narrowing is the service's.
    _, seen = await review.activity_page(AUDRA, BrowseFilter(principal=str(BOB)))
    assert [r.audit_id for r in seen.records] == [bobs]
    with pytest.raises(AccessDenied) as refused:
        await review.exec_detail(ALICE, bobs)
    assert refused.value.fields["kind"] == "not_yours"
    assert (await review.exec_detail(AUDRA, bobs)).record.audit_id == bobs
    assert (await review.exec_detail(BOB, bobs)).record.audit_id == bobs


async def test_unknown_principals_see_nothing_and_integrity_is_for_auditors(
    audit_store: SqlAuditStore,
) -> None:
    review = service(audit_store).review
    await record(audit_store, ALICE, "echo", "a")
    with pytest.raises(UnknownPrincipal):
        await review.activity_page(Principal.parse("slack:U0STRANGER"), BrowseFilter())
    with pytest.raises(AccessDenied):
        await review.verify_now(ALICE)
    report = await review.verify_now(AUDRA)
    assert report.ok and report.rows_checked >= 1


async def test_pages_continue_after_their_cursor_without_gaps_or_repeats(
    audit_store: SqlAuditStore,
) -> None:
    review = service(audit_store).review
    made = [await record(audit_store, ALICE, "echo", str(i)) for i in range(7)]
    seen: list[str] = []
    after: Cursor | None = None
    while True:
        _, page = await review.activity_page(AUDRA, BrowseFilter(), after=after, limit=3)
        seen.extend(r.audit_id for r in page.records)
        if page.next_cursor is None:
            break
        after = Cursor.decode(page.next_cursor.encode())
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen)) == 7


async def test_counts_split_by_effect_and_text_search_is_case_insensitive(
    audit_store: SqlAuditStore,
) -> None:
    review = service(audit_store).review
    await record(audit_store, ALICE, "echo", "Hello")
    await record(audit_store, ALICE, "sh", "-c", "id", effect="deny")
    now = dt.datetime.now(dt.UTC)
    window = BrowseFilter(since=now - dt.timedelta(hours=1), until=now + dt.timedelta(minutes=1))
    activity = await review.activity_chart(
        AUDRA, window, [now - dt.timedelta(hours=1)], now + dt.timedelta(minutes=1)
    )
    assert sorted((c.effect, c.count) for c in activity.counts) == [("allow", 1), ("deny", 1)]
    assert activity.top_denied == (("diagnostics", 1),)
    _, page = await review.activity_page(AUDRA, BrowseFilter(text="hELLO"))
    assert [r.intent.argv for r in page.records] == [("echo", "Hello")]
    _, literal = await review.activity_page(AUDRA, BrowseFilter(text="%"))
    assert literal.records == ()


async def test_a_session_transcript_is_its_commands_in_order_for_its_owner_only(
    audit_store: SqlAuditStore,
) -> None:
    review = service(audit_store).review
    session = await audit_store.create_session(
        principal=str(ALICE), target=str(TARGET), reason="debugging", cwd="/"
    )
    decision = Decision(Effect.ALLOW, "session-builtin", "session builtin cd")
    for argv in (("cd", "/tmp"), ("ls",)):
        await audit_store.record_intent(
            intent_for(
                str(ALICE), Surface.MCP, TARGET, argv, decision, session_id=session.session_id
            )
        )
    transcript = await review.transcript(ALICE, session.session_id)
    assert [r.intent.argv for r in transcript.records] == [("cd", "/tmp"), ("ls",)]
    assert len((await review.transcript(AUDRA, session.session_id)).records) == 2
    with pytest.raises(AccessDenied):
        await review.transcript(BOB, session.session_id)


async def test_free_text_finds_a_match_far_back_and_pages_through_every_match(
    audit_store: SqlAuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short look at the newest rows, so most of the log lies beyond it.
    monkeypatch.setattr(browse, "LOOK_FIRST", 5)
    review = service(audit_store).review
    old = [await record(audit_store, ALICE, "cat", f"/var/log/Needle-{i}.log") for i in range(2)]
    for i in range(30):
        await record(audit_store, ALICE, "echo", f"hay {i}")
    new = [await record(audit_store, ALICE, "ls", "/tmp/NEEDLE-new") for _ in range(3)]
    for text in ("needle", "Ne", '"needle'):
        seen: list[str] = []
        after: Cursor | None = None
        while True:
            _, page = await review.activity_page(
                AUDRA, BrowseFilter(text=text), after=after, limit=2
            )
            seen.extend(r.audit_id for r in page.records)
            if page.next_cursor is None:
                break
            after = page.next_cursor
        expected = [] if text.startswith('"') else [*reversed(new), *reversed(old)]
        assert seen == expected, text
    # The chart counts the matches too, far back or not, and only them.
    now = dt.datetime.now(dt.UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    window = BrowseFilter(text="needle", since=hour - dt.timedelta(hours=2), until=now)
    starts = [hour - dt.timedelta(hours=2), hour - dt.timedelta(hours=1), hour]
    chart = await review.activity_chart(AUDRA, window, starts, now)
    assert {c.effect for c in chart.counts} == {"allow"}
    assert sum(c.count for c in chart.counts) == 5
    assert {c.start for c in chart.counts} <= set(starts)


async def test_a_chart_narrowed_to_one_principal_counts_as_the_whole_log_chart_does(
    audit_store: SqlAuditStore,
) -> None:
    review = service(audit_store).review
    for effect in ("allow", "allow", "deny", "approve"):
        await record(audit_store, ALICE, "echo", effect, effect=effect)
    now = dt.datetime.now(dt.UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    starts = [hour - dt.timedelta(hours=i) for i in (2, 1, 0)]
    window = BrowseFilter(since=starts[0], until=now + dt.timedelta(seconds=1))
    end = now + dt.timedelta(seconds=1)
    whole = await review.activity_chart(AUDRA, window, starts, end)  # a count per bucket
    own = await review.activity_chart(ALICE, window, starts, end)  # one pass, by principal
    assert own == whole
    assert sorted((c.effect, c.count) for c in own.counts) == [
        ("allow", 2),
        ("approve", 1),
        ("deny", 1),
    ]
