"""Approval cards: posted for requests that need approval, decided with their buttons."""

from __future__ import annotations

import pytest

from bot.cards import APPROVE_ACTION, DENY_ACTION
from policies.types import ExecRequest, Principal, PrincipalKind, Surface, Target
from tests.bot.fake_slack import Call
from tests.bot.rig import APPROVALS, Rig
from tests.bot.test_slack_exec import context_text, to

CAPTURE = "touch /tmp/capture.pcap"


async def _ask(rig: Rig, command: str = CAPTURE, user: str = "UALICE") -> tuple[str, Call]:
    """Send a command that needs approval; the requester's response URL name and the card."""
    _, name = await rig.command(user, f'--reason "INC-7 packet loss" {rig.instance} {command}')
    pending = await rig.fake.wait_call("response_url", to(name))
    assert pending.data["response_type"] == "ephemeral"
    approval_id = next(
        part.strip("`")
        for part in context_text(pending).split()
        if part.strip("`").startswith("ap_")
    )
    card = await rig.card_for(approval_id)
    return name, card


def _updates(rig: Rig, card: Call) -> list[Call]:
    return [c for c in rig.fake.of("chat.update") if c.data.get("ts") == card.ts]


async def _ephemeral_to(rig: Rig, user: str, code: str) -> Call:
    return await rig.fake.wait_call(
        "chat.postEphemeral",
        lambda c: c.data.get("user") == user and f"code `{code}`" in context_text(c),
    )


async def _approved_runs(rig: Rig, card: Call) -> None:
    """Control for a "nothing ran" assertion: an approver's click on ``card`` runs the
    capture, and its file appears where the test looked for it."""
    await rig.click("UBOB", card, APPROVE_ACTION)
    await rig.fake.wait_for(lambda _: (rig.state_tmp() / "capture.pcap").exists() or None)
    assert (rig.state_tmp() / "capture.pcap").exists()


async def test_command_needing_approval_posts_a_card_and_tells_the_requester(rig: Rig) -> None:
    _, card = await _ask(rig)
    assert card.data["channel"] == APPROVALS
    assert card.has_action(APPROVE_ACTION) and card.has_action(DENY_ACTION)
    shown = card.rendered
    for fact in ("<@UALICE>", rig.instance, "touch /tmp/capture.pcap", "INC-7 packet loss"):
        assert fact in shown
    assert "`capture`" in shown
    assert "<!date^" in shown  # the expiry, in the reader's time zone
    assert not (rig.state_tmp() / "capture.pcap").exists()
    await _approved_runs(rig, card)


async def test_approver_click_runs_the_command_posts_the_result_where_asked_and_updates_the_card(
    rig: Rig,
) -> None:
    name, card = await _ask(rig)
    response = await rig.click("UBOB", card, APPROVE_ACTION)
    assert response.status_code == 200
    result = await rig.fake.wait_call("response_url", to(name, "in_channel"))
    assert "<@UALICE>" in result.rendered
    assert "exit 0" in context_text(result)
    assert (rig.state_tmp() / "capture.pcap").exists()
    update = await rig.fake.wait_for(lambda _: _updates(rig, card))
    assert not update[-1].has_action(APPROVE_ACTION)
    assert "<@UBOB>" in update[-1].rendered


async def test_requester_cannot_approve_their_own_request(rig: Rig) -> None:
    _, card = await _ask(rig)
    await rig.click("UALICE", card, APPROVE_ACTION)
    await _ephemeral_to(rig, "UALICE", "self_approval")
    assert not (rig.state_tmp() / "capture.pcap").exists()
    (pending,) = await rig.pending_approvals()
    assert pending.approvals == ()
    await _approved_runs(rig, card)


async def test_click_by_someone_outside_the_approver_role_is_refused(rig: Rig) -> None:
    _, card = await _ask(rig)
    await rig.click("UDAVE", card, APPROVE_ACTION)
    await _ephemeral_to(rig, "UDAVE", "not_an_approver")
    assert not (rig.state_tmp() / "capture.pcap").exists()
    assert _updates(rig, card) == []
    await _approved_runs(rig, card)


async def test_member_of_the_approvers_user_group_can_approve(rig: Rig) -> None:
    name, card = await _ask(rig)
    await rig.click("UCAROL", card, APPROVE_ACTION)
    await rig.fake.wait_call("response_url", to(name, "in_channel"))
    assert (rig.state_tmp() / "capture.pcap").exists()


async def test_threshold_two_needs_two_distinct_approvers(rig: Rig) -> None:
    name, card = await _ask(rig, "uname -a")
    assert "2 distinct approver(s) needed" in context_text(card)
    await rig.click("UBOB", card, APPROVE_ACTION)
    first = await rig.fake.wait_for(lambda _: _updates(rig, card))
    assert first[-1].has_action(APPROVE_ACTION)  # still pending
    await rig.fake.wait_call("chat.postEphemeral", lambda c: c.data.get("user") == "UBOB")
    # The same approver again does not make two.
    await rig.click("UBOB", card, APPROVE_ACTION)
    await rig.fake.wait_for(lambda _: len(_updates(rig, card)) >= 2)
    (pending,) = await rig.pending_approvals()
    assert pending.approvals == ("slack:UBOB",)

    await rig.click("UCAROL", card, APPROVE_ACTION)
    result = await rig.fake.wait_call("response_url", to(name, "in_channel"))
    assert "Linux" in result.rendered
    final = _updates(rig, card)[-1]
    assert not final.has_action(APPROVE_ACTION)
    assert "<@UBOB>" in final.rendered and "<@UCAROL>" in final.rendered


async def test_expired_card_says_so_when_clicked_and_loses_its_buttons(rig: Rig) -> None:
    _, card = await _ask(rig, "uptime")
    await rig.click("UBOB", card, APPROVE_ACTION)
    await _ephemeral_to(rig, "UBOB", "approval_expired")
    update = await rig.fake.wait_for(lambda _: _updates(rig, card))
    assert not update[-1].has_action(APPROVE_ACTION)
    assert "Expired" in update[-1].rendered


async def test_decided_card_says_so_when_clicked_again(rig: Rig) -> None:
    name, card = await _ask(rig)
    await rig.click("UBOB", card, APPROVE_ACTION)
    await rig.fake.wait_call("response_url", to(name, "in_channel"))
    await rig.click("UCAROL", card, APPROVE_ACTION)
    await _ephemeral_to(rig, "UCAROL", "approval_decided")


async def test_deny_tells_the_requester_and_nothing_runs(rig: Rig) -> None:
    name, card = await _ask(rig)
    await rig.click("UBOB", card, DENY_ACTION)
    told = await rig.fake.wait_call(
        "response_url", lambda c: to(name, "ephemeral")(c) and "denied" in c.rendered
    )
    assert "<@UBOB>" in told.rendered
    update = await rig.fake.wait_for(lambda _: _updates(rig, card))
    assert not update[-1].has_action(APPROVE_ACTION)
    assert not (rig.state_tmp() / "capture.pcap").exists()
    # Control: the same request asked again and approved runs and leaves the file.
    _, again = await _ask(rig)
    await _approved_runs(rig, again)


@pytest.mark.parametrize("surface", [Surface.CLI, Surface.MCP], ids=["cli", "mcp"])
async def test_request_from_another_surface_gets_a_card_and_its_result_in_the_card_thread(
    rig: Rig, surface: Surface
) -> None:
    kind = PrincipalKind.LOCAL if surface is Surface.CLI else PrincipalKind.MCP
    pending = await rig.running.service.exec(
        ExecRequest(
            principal=Principal(kind, "alice"),
            surface=surface,
            target=Target.parse(rig.instance),
            argv=("touch", "/tmp/capture.pcap"),
            reason="from the terminal",
        )
    )
    assert pending.approval_id is not None
    card = await rig.card_for(pending.approval_id)
    assert "alice" in card.rendered
    await rig.click("UBOB", card, APPROVE_ACTION)
    result = await rig.fake.wait_call(
        "chat.postMessage", lambda c: c.data.get("thread_ts") == card.ts
    )
    assert "exit 0" in context_text(result)
    assert (rig.state_tmp() / "capture.pcap").exists()
