"""Approval cards: the request an approver decides on, and its state once decided."""

from __future__ import annotations

from typing import Any

from bot.outbox import Blocks
from bot.render import Message, context, section, slack_date
from bot.text import code_block, escape, inline_code, mention, shown_command
from policies.ports import ApprovalRecord, ApprovalState
from policies.service.results import ExecResult
from policies.types import join_argv

APPROVE_ACTION = "execgate_approve"
DENY_ACTION = "execgate_deny"


def _buttons(record: ApprovalRecord) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": f"approval:{record.approval_id}",
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION,
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "value": record.approval_id,
            },
            {
                "type": "button",
                "action_id": DENY_ACTION,
                "text": {"type": "plain_text", "text": "Deny"},
                "style": "danger",
                "value": record.approval_id,
            },
        ],
    }


def _state_line(record: ApprovalRecord, result: ExecResult | None) -> str:
    approvers = ", ".join(mention(p) for p in record.approvals)
    if record.state is ApprovalState.PENDING:
        needed = record.threshold - len(record.approvals)
        so_far = f" Approved so far by {approvers}." if approvers else ""
        return f":hourglass_flowing_sand: Waiting for {needed} more approval(s).{so_far}"
    if record.state is ApprovalState.DENIED:
        by = mention(record.denied_by) if record.denied_by else "an approver"
        return f":no_entry: Denied by {by}. Nothing ran."
    if record.state is ApprovalState.EXPIRED:
        return ":alarm_clock: Expired before enough approvals. Nothing ran."
    if record.state is ApprovalState.WITHDRAWN:
        return f":leftwards_arrow_with_hook: Withdrawn by {mention(record.requester)}. Nothing ran."
    line = f":white_check_mark: Approved by {approvers or 'approvers'}."
    if result is not None and result.ran:
        code = result.exit_code if result.exit_code is not None else "none"
        line += f" Ran: exit {code}, audit `{escape(result.audit_id or '')}`."
    elif result is not None:
        line += f" Did not run: {escape(result.error or result.status.value)}."
    return line


# The header of a decided card: what became of the request, at a glance.
_DECIDED_HEADERS = {
    ApprovalState.APPROVED: ":white_check_mark: *Approved*",
    ApprovalState.EXECUTED: ":white_check_mark: *Approved*",
    ApprovalState.DENIED: ":no_entry: *Denied*",
    ApprovalState.WITHDRAWN: ":leftwards_arrow_with_hook: *Withdrawn*",
    ApprovalState.EXPIRED: ":alarm_clock: *Expired*",
}


def _header(record: ApprovalRecord) -> str:
    roles = escape(" or ".join(record.approver_roles))
    decided = _DECIDED_HEADERS.get(record.state)
    if decided is None:
        return f":raised_hand: *Approval needed* from {roles}"
    return f"{decided} (approval was needed from {roles})"


def approval_card(record: ApprovalRecord, result: ExecResult | None = None) -> Message:
    """The card for ``record``; buttons only while it is pending."""
    command = shown_command(join_argv(record.argv))
    fields = [
        f"*Requester*\n{mention(record.requester)}",
        f"*Target*\n{inline_code(record.target)}",
        f"*Rule*\n`{escape(record.rule_id)}`",
        f"*Expires*\n{slack_date(record.expires_at)}",
    ]
    blocks: Blocks = [
        section(_header(record)),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        section(f"*Command*\n{code_block(command, 2900)}"),
        section(f"*Reason*\n{escape(record.reason) if record.reason else '_none given_'}"),
        context(
            f"{record.threshold} distinct approver(s) needed",
            "the requester cannot approve",
            f"approval `{escape(record.approval_id)}`",
            f"audit `{escape(record.audit_id)}`",
        ),
        section(_state_line(record, result)),
    ]
    if record.state is ApprovalState.PENDING:
        blocks.append(_buttons(record))
    verb = "Approval needed" if record.state is ApprovalState.PENDING else record.state.value
    if record.state is ApprovalState.EXECUTED:
        verb = "approved"
    text = f"{verb.capitalize()}: {record.requester} wants to run {command} on {record.target}"
    return text[:300], blocks
