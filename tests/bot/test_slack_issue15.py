"""What Slack users hit: dropped output said, idle sessions ended in their thread,
requests withdrawn by their requester, narrowed audit searches said, approvers named."""

from __future__ import annotations

from pathlib import Path

from bot.cards import APPROVE_ACTION, DENY_ACTION
from policies.ports import ExecStatus
from policies.types import ApprovalId, SessionId
from tests.bot.fake_slack import Call, FakeSlack
from tests.bot.rig import WAR_ROOM, Rig, open_rig, slack_settings
from tests.bot.test_slack_approvals import _ask, _ephemeral_to, _updates
from tests.bot.test_slack_exec import context_text, to


def _header(call: Call) -> str:
    return str(call.blocks[0]["text"]["text"])


def _approval_id(card: Call) -> ApprovalId:
    return ApprovalId(
        next(e["value"] for b in card.blocks if b["type"] == "actions" for e in b["elements"])
    )


# ---------------------------------------------------------------- dropped bytes


async def test_output_past_max_output_says_how_many_bytes_were_not_kept(rig: Rig) -> None:
    # seq -w 2000 prints 2,000 lines of five bytes; the rule keeps 1 KiB of them.
    _, name = await rig.command("UALICE", f"{rig.instance} seq -w 2000")
    result = await rig.fake.wait_call("response_url", to(name, "in_channel"))
    assert "exit 0" in context_text(result)
    (record,) = await rig.audit()
    assert record.outcome is not None and record.outcome.stdout_bytes == 1024  # kept
    assert "8,976 bytes past the rule's max_output were not kept" in context_text(result)


async def test_output_within_max_output_says_nothing_was_dropped(rig: Rig) -> None:
    _, name = await rig.command("UALICE", f"{rig.instance} seq -w 100")
    result = await rig.fake.wait_call("response_url", to(name, "in_channel"))
    assert "exit 0" in context_text(result)
    assert "max_output" not in context_text(result)


# ---------------------------------------------------------------- idle sessions


async def test_idle_session_ends_in_its_thread_when_it_happens(
    tmp_path: Path, database_url: str, fake_slack: FakeSlack
) -> None:
    settings = slack_settings(tmp_path, database_url, fake_slack)
    settings = settings.model_copy(update={"session_idle_seconds": 1.0})
    async with open_rig(settings, fake_slack) as rig:
        await rig.command("UALICE", f"session {rig.instance}")
        anchor = await rig.fake.wait_call(
            "chat.postMessage",
            lambda c: c.data.get("channel") == WAR_ROOM and "session `se_" in context_text(c),
        )
        assert "ends after 1 second without commands" in context_text(anchor)
        # Nobody replies: the thread hears the end without anyone asking.
        ended = await rig.fake.wait_call(
            "chat.postMessage", lambda c: c.data.get("thread_ts") == anchor.ts, timeout=15
        )
        assert "Session ended after 1 second idle" in ended.rendered
        session_id = next(
            w.strip("`") for w in context_text(anchor).split() if w.strip("`").startswith("se_")
        )
        record = await rig.running.service.audit.get_session(SessionId(session_id))
        assert record.ended_at is not None and record.end_reason == "idle timeout"


async def test_session_anchor_states_the_configured_idle_time(
    tmp_path: Path, database_url: str, fake_slack: FakeSlack
) -> None:
    settings = slack_settings(tmp_path, database_url, fake_slack)
    settings = settings.model_copy(update={"session_idle_seconds": 120.0})
    async with open_rig(settings, fake_slack) as rig:
        await rig.command("UALICE", f"session {rig.instance}")
        anchor = await rig.fake.wait_call(
            "chat.postMessage",
            lambda c: c.data.get("channel") == WAR_ROOM and "session `se_" in context_text(c),
        )
        assert "ends after 2 minutes without commands" in context_text(anchor)
        assert "10 minutes" not in anchor.rendered


# ---------------------------------------------------------------- withdrawal


async def test_requester_deny_withdraws_their_own_request_and_it_is_recorded(rig: Rig) -> None:
    _, card = await _ask(rig)
    await rig.click("UALICE", card, DENY_ACTION)
    told = await rig.fake.wait_call(
        "chat.postEphemeral",
        lambda c: c.data.get("user") == "UALICE" and "withdrew" in c.rendered,
    )
    assert "self_approval" not in context_text(told)
    update = await rig.fake.wait_for(lambda _: _updates(rig, card))
    assert not update[-1].has_action(APPROVE_ACTION)
    assert "*Withdrawn*" in _header(update[-1])
    approval = await rig.running.service.audit.get_approval(_approval_id(card))
    assert approval.state.value == "withdrawn"
    execution = await rig.running.service.audit.get_exec(approval.audit_id)
    assert execution.outcome is not None
    assert execution.outcome.status is ExecStatus.APPROVAL_WITHDRAWN
    assert not (rig.state_tmp() / "capture.pcap").exists()


async def test_withdrawn_request_can_no_longer_be_approved(rig: Rig) -> None:
    _, card = await _ask(rig)
    await rig.click("UALICE", card, DENY_ACTION)
    await rig.fake.wait_for(lambda _: _updates(rig, card))
    await rig.click("UBOB", card, APPROVE_ACTION)
    await _ephemeral_to(rig, "UBOB", "approval_decided")
    assert not (rig.state_tmp() / "capture.pcap").exists()


async def test_someone_else_cannot_withdraw_a_request(rig: Rig) -> None:
    _, card = await _ask(rig)
    await rig.click("UDAVE", card, DENY_ACTION)  # an operator, not the requester
    await _ephemeral_to(rig, "UDAVE", "not_an_approver")
    approval = await rig.running.service.audit.get_approval(_approval_id(card))
    assert approval.state.value == "pending"
    # The same request stays approvable: the click could have changed it and did not.
    await rig.click("UBOB", card, APPROVE_ACTION)
    await rig.fake.wait_for(lambda _: (rig.state_tmp() / "capture.pcap").exists() or None)


async def test_any_click_on_a_decided_card_is_told_it_is_decided(rig: Rig) -> None:
    name, card = await _ask(rig)
    await rig.click("UBOB", card, APPROVE_ACTION)
    await rig.fake.wait_call("response_url", to(name, "in_channel"))
    # The requester and a non-approver hear the same: it is decided.
    await rig.click("UALICE", card, DENY_ACTION)
    await _ephemeral_to(rig, "UALICE", "approval_decided")
    await rig.click("UDAVE", card, APPROVE_ACTION)
    told = await _ephemeral_to(rig, "UDAVE", "approval_decided")
    assert "approved" in told.rendered


# ---------------------------------------------------------------- decided cards and results


async def test_approved_result_names_its_approver_and_the_card_header_says_approved(
    rig: Rig,
) -> None:
    name, card = await _ask(rig)
    assert "Approval needed" in _header(card)
    await rig.click("UBOB", card, APPROVE_ACTION)
    result = await rig.fake.wait_call("response_url", to(name, "in_channel"))
    assert "approved by <@UBOB>" in context_text(result)
    update = await rig.fake.wait_for(lambda _: _updates(rig, card))
    assert "*Approved*" in _header(update[-1])


async def test_denied_card_header_says_denied(rig: Rig) -> None:
    _, card = await _ask(rig)
    await rig.click("UBOB", card, DENY_ACTION)
    update = await rig.fake.wait_for(lambda _: _updates(rig, card))
    assert "*Denied*" in _header(update[-1])


async def test_expired_card_header_says_expired(rig: Rig) -> None:
    _, card = await _ask(rig, "uptime")
    await rig.click("UBOB", card, APPROVE_ACTION)
    update = await rig.fake.wait_for(lambda _: _updates(rig, card))
    assert "*Expired*" in _header(update[-1])


# ---------------------------------------------------------------- audit


async def _two_users_ran_id(rig: Rig) -> dict[str, str]:
    for user in ("UALICE", "UBOB"):
        _, name = await rig.command(user, f"{rig.instance} id")
        await rig.fake.wait_call("response_url", to(name, "in_channel"))
    records = await rig.audit()
    return {r.intent.principal: r.audit_id for r in records}


async def test_non_auditor_asking_for_someone_else_is_told_the_search_was_narrowed(
    rig: Rig,
) -> None:
    records = await _two_users_ran_id(rig)
    _, name = await rig.command("UALICE", "audit user=<@UBOB>")
    answer = await rig.fake.wait_call("response_url", to(name))
    assert "narrowed to <@UALICE>" in context_text(answer)
    assert records["slack:UALICE"] in answer.rendered
    assert records["slack:UBOB"] not in answer.rendered


async def test_auditor_search_is_not_narrowed(rig: Rig) -> None:
    records = await _two_users_ran_id(rig)
    _, name = await rig.command("UAUDITOR", "audit user=<@UBOB>")
    answer = await rig.fake.wait_call("response_url", to(name))
    assert "narrowed" not in answer.rendered
    assert records["slack:UBOB"] in answer.rendered


async def test_audit_user_by_slack_name_or_display_name_resolves_through_the_directory(
    fresh_rig: Rig,
) -> None:
    # A rig of its own: the shared one may have the Slack names in its directory cache
    # already, and this test counts the look-ups.
    rig = fresh_rig
    records = await _two_users_ran_id(rig)
    for who in ("@bob", "@Bobby"):
        _, name = await rig.command("UAUDITOR", f"audit user={who}")
        answer = await rig.fake.wait_call("response_url", to(name))
        assert records["slack:UBOB"] in answer.rendered
        assert records["slack:UALICE"] not in answer.rendered
    # Resolved once, from the cache the second time.
    assert len(rig.fake.of("users.list")) == 1


async def test_audit_user_with_an_unknown_name_is_a_usage_error(rig: Rig) -> None:
    records = await _two_users_ran_id(rig)
    _, name = await rig.command("UAUDITOR", "audit user=@nobody-here")
    answer = await rig.fake.wait_call("response_url", to(name))
    assert "code `command_rejected`" in context_text(answer)
    assert records["slack:UBOB"] not in answer.rendered
    # The same search by a known name finds the record: the refusal was the name's.
    _, name = await rig.command("UAUDITOR", "audit user=@bob")
    found = await rig.fake.wait_call("response_url", to(name))
    assert records["slack:UBOB"] in found.rendered
