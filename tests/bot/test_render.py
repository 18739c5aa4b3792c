"""Rendering for Slack: escaping, Slack's size limits, approval cards. Pure."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from bot.cards import APPROVE_ACTION, approval_card
from bot.render import refusal_message, result_message
from bot.text import (
    SECTION_LIMIT,
    code_block,
    fit_mrkdwn,
    from_slack,
    inline_code,
    mention,
    unwrap_code,
)
from policies.ports import ApprovalRecord, ApprovalState, ExecStatus
from policies.service.results import ExecResult
from policies.types import ApprovalId, AuditId, Effect


@pytest.mark.parametrize(
    "output",
    ["<!channel> <@U123> <https://evil.example|click>", "a ``` b", "x & y"],
    ids=["mentions-and-links", "code-fence", "ampersand"],
)
def test_output_cannot_ping_link_or_leave_its_code_block(output: str) -> None:
    block = code_block(output)
    body = block[4:-4]
    assert block.startswith("```\n") and block.endswith("\n```")
    assert "<" not in body and ">" not in body
    assert "```" not in body
    assert "&amp;" in body or "&" not in output


@pytest.mark.parametrize(
    "output",
    ["x" * 5000, "<>&" * 2000, "\n".join(str(n) for n in range(3000))],
    ids=["long-line", "escaping-grows-it", "many-lines"],
)
def test_code_block_fits_a_section_keeping_head_and_tail(output: str) -> None:
    block = code_block(output)
    assert len(block) <= SECTION_LIMIT
    assert "omitted" in block


def test_inline_code_cannot_be_closed_early() -> None:
    assert inline_code("a`b <@U1>") == "`aˋb &lt;@U1&gt;`"


@pytest.mark.parametrize(
    ("principal", "shown"),
    [("slack:U1", "<@U1>"), ("local:alice", "`local:alice`"), ("mcp:bot", "`mcp:bot`")],
    ids=["slack", "local", "mcp"],
)
def test_principals_are_shown_as_people(principal: str, shown: str) -> None:
    assert mention(principal) == shown


@pytest.mark.parametrize(
    ("typed", "command"),
    [("`id`", "id"), ("```\nps aux\n```", "ps aux"), ("`a` and `b`", "`a` and `b`")],
    ids=["inline", "fence", "two-spans-stay"],
)
def test_code_formatting_around_a_command_is_removed(typed: str, command: str) -> None:
    assert unwrap_code(from_slack(typed)) == command


def _result(**changes: Any) -> ExecResult:
    base: dict[str, Any] = {
        "effect": Effect.ALLOW,
        "rule": "read-only",
        "reason": "allowed",
        "audit_id": AuditId("ex_1"),
        "status": ExecStatus.COMPLETED,
        "target": "local:demo-api/c-1",
        "exit_code": 0,
        "stdout": "hello\n",
        "duration_ms": 12,
    }
    return ExecResult(**{**base, **changes})


def test_result_names_who_what_where_exit_code_duration_and_audit_id() -> None:
    text, blocks = result_message(_result(), who="slack:U1", command="echo hello")
    context = blocks[1]["elements"][0]["text"]
    assert blocks[0]["text"]["text"] == "<@U1> ran `echo hello` on `local:demo-api/c-1`"
    assert context == "exit 0 · 12 ms · rule `read-only` · audit `ex_1`"
    assert blocks[2]["text"]["text"] == "```\nhello\n```"
    assert "hello\n" not in text  # the notification never carries output


def test_refusal_names_the_rule_and_code() -> None:
    refused = _result(
        effect=Effect.DENY, status=ExecStatus.DENIED, error_code="denied", error="no rule allows it"
    )
    _, blocks = refusal_message(refused)
    assert "rule `read-only`" in blocks[1]["elements"][0]["text"]
    assert "code `denied`" in blocks[1]["elements"][0]["text"]


def _record(state: ApprovalState, approvals: tuple[str, ...] = ()) -> ApprovalRecord:
    now = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)
    return ApprovalRecord(
        approval_id=ApprovalId("ap_1"),
        audit_id=AuditId("ex_1"),
        request_hash="h",
        requester="slack:U1",
        target="local:demo-api/c-1",
        argv=("tcpdump", "-c", "10", "-w", "/tmp/x.pcap", "port", "443"),
        reason="INC-7",
        rule_id="packet-capture",
        approver_roles=("approvers",),
        threshold=2,
        created_at=now,
        expires_at=now + dt.timedelta(minutes=15),
        state=state,
        approvals=approvals,
    )


@pytest.mark.parametrize(
    ("state", "buttons"),
    [
        (ApprovalState.PENDING, True),
        (ApprovalState.APPROVED, False),
        (ApprovalState.DENIED, False),
        (ApprovalState.EXPIRED, False),
        (ApprovalState.EXECUTED, False),
    ],
    ids=lambda v: v.value if isinstance(v, ApprovalState) else None,
)
def test_approval_card_has_buttons_only_while_pending(state: ApprovalState, buttons: bool) -> None:
    _, blocks = approval_card(_record(state, ("slack:U2",)))
    has = any(
        e.get("action_id") == APPROVE_ACTION
        for b in blocks
        if b["type"] == "actions"
        for e in b["elements"]
    )
    assert has is buttons


def test_approval_card_shows_the_exact_command_requester_reason_rule_and_expiry() -> None:
    _, blocks = approval_card(_record(ApprovalState.PENDING))
    shown = str(blocks)
    assert "tcpdump -c 10 -w /tmp/x.pcap port 443" in shown
    for fact in ("<@U1>", "INC-7", "`packet-capture`", "<!date^1793621700^", "2 distinct"):
        assert fact in shown


def test_a_secret_typed_into_a_command_is_not_shown() -> None:
    token = "xoxb-1234567890-abcdefghijkl"
    command = f"curl -H 'Authorization: Bearer {token}' http://127.0.0.1:8080/"
    text, blocks = result_message(_result(), who="slack:U1", command=command)
    assert token not in text + str(blocks)
    record = _record(ApprovalState.PENDING)
    record = dataclasses.replace(record, argv=("curl", "-H", f"Bearer {token}"))
    _, card = approval_card(record)
    assert token not in str(card)


@pytest.mark.parametrize(
    "text",
    [
        "x" * 3500,
        "a &lt;b&gt; " * 400,
        "<@U123> " * 500,
        "*Command*\n```\n" + "y" * 4000 + "\n```",
        "`" + "z" * 3200 + "`",
    ],
    ids=["plain", "entities", "mentions", "open-code-block", "open-code-span"],
)
def test_section_text_is_cut_within_slacks_limit_without_breaking_markup(text: str) -> None:
    fitted = fit_mrkdwn(text)
    assert len(fitted) <= SECTION_LIMIT
    assert fitted.count("```") % 2 == 0
    assert fitted.replace("```", "").count("`") % 2 == 0
    assert fitted.rfind("<") <= fitted.rfind(">")
    assert fitted.rfind("&") <= fitted.rfind(";")
