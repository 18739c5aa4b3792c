"""Approval cards in Slack: posted for every new approval request (from any surface),
decided with their buttons.

A click becomes ``service.vote`` by the clicking Slack user; the service enforces who
may approve, self-approval, expiry, the threshold and the binding to the exact
command. This module only says what happened: to the clicker when the click changed
nothing, on the card when it did, and with the result where the command was asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bot.cards import approval_card
from bot.directory import Directory
from bot.outbox import Outbox, Place
from bot.render import error_message, internal_error_message, notice
from bot.runner import OutputCapture, Runner
from bot.text import inline_code, mention, shown_command
from policies.errors import (
    ApprovalAlreadyDecided,
    ApprovalExpired,
    ApprovalNotFound,
    ExecGateError,
    SelfApprovalRefused,
)
from policies.ports import ApprovalRecord, ApprovalState
from policies.types import ApprovalId, Principal, join_argv

logger = logging.getLogger(__name__)


class ApprovalDesk:
    """Posts approval cards and turns button clicks into votes."""

    def __init__(
        self, runner: Runner, outbox: Outbox, directory: Directory, approvals_channel: str
    ) -> None:
        self._runner = runner
        self._service = runner.service
        self._outbox = outbox
        self._directory = directory
        self._channel = approvals_channel

    async def on_new_approval(self, record: ApprovalRecord) -> None:
        """The service's approval listener: post the card to the approvers' channel
        (or, without one, to the channel the request came from)."""
        origin = Place.from_context(record.context)
        channel = self._channel or (origin.channel if origin else "")
        if not channel:
            logger.warning(
                "no approvals channel configured; approval card not posted",
                extra={"audit_id": record.audit_id},
            )
            return
        ts = await self._outbox.message(channel, *approval_card(record))
        if ts is None:
            logger.error("approval card not posted", extra={"audit_id": record.audit_id})

    async def on_click(self, body: Mapping[str, Any], *, approve: bool) -> None:
        """An Approve or Deny button was clicked on a card."""
        user_id = str(body["user"]["id"])
        action = (body.get("actions") or [{}])[0]
        approval_id = ApprovalId(str(action.get("value", "")))
        container = body.get("container") or {}
        channel = str(container.get("channel_id") or (body.get("channel") or {}).get("id", ""))
        card_ts = str(container.get("message_ts") or (body.get("message") or {}).get("ts", ""))
        clicker = Place(channel, user_id)
        try:
            principal = await self._directory.principal(user_id)
        except ExecGateError as exc:
            await self._outbox.ephemeral(clicker, *error_message(exc))
            return
        try:
            capture = OutputCapture(self._runner.config.full_output_max_chars)
            vote = await self._service.vote(
                approval_id,
                principal,
                approve=approve,
                on_output=capture.feed,
                inline_limit=self._runner.config.inline_chars,
            )
        except (ApprovalExpired, ApprovalAlreadyDecided) as exc:
            await self._outbox.ephemeral(clicker, *error_message(exc))
            await self._refresh_card(approval_id, principal, channel, card_ts)
            return
        except SelfApprovalRefused as exc:
            if approve:
                await self._outbox.ephemeral(clicker, *error_message(exc))
            else:
                # The requester's own Deny takes the request back.
                await self._withdraw(approval_id, principal, clicker, card_ts)
            return
        except ExecGateError as exc:
            # Self-approval, not an approver, unknown user, unknown request, ...
            await self._outbox.ephemeral(clicker, *error_message(exc))
            return
        except Exception:
            logger.exception("approval vote failed")
            await self._outbox.ephemeral(clicker, *internal_error_message(None))
            return
        record, result = vote.approval, vote.result
        if card_ts:
            await self._outbox.update(channel, card_ts, *approval_card(record, result))
        if record.state is ApprovalState.PENDING:
            needed = record.threshold - len(record.approvals)
            await self._outbox.ephemeral(
                clicker, *notice(f"Your approval is recorded; {needed} more needed.")
            )
            return
        origin = Place.from_context(record.context)
        if record.state is ApprovalState.DENIED:
            if origin is not None:
                command = inline_code(shown_command(join_argv(record.argv)))
                text = (
                    f":no_entry: Your request to run {command} on "
                    f"{inline_code(record.target)} was denied by {mention(str(principal))}."
                )
                await self._outbox.ephemeral(origin, *notice(text))
            return
        if result is None:
            return
        # No Slack origin (the request came from the CLI or MCP): answer on the card.
        place = origin or Place(channel, user_id, thread_ts=card_ts or None)
        await self._runner.deliver(
            place,
            result,
            who=record.requester,
            command=join_argv(record.argv),
            capture=capture,
        )

    async def _withdraw(
        self, approval_id: ApprovalId, principal: Principal, clicker: Place, card_ts: str
    ) -> None:
        try:
            record = await self._service.withdraw(approval_id, principal)
        except (ApprovalExpired, ApprovalAlreadyDecided) as exc:
            await self._outbox.ephemeral(clicker, *error_message(exc))
            await self._refresh_card(approval_id, principal, clicker.channel, card_ts)
            return
        except ExecGateError as exc:
            await self._outbox.ephemeral(clicker, *error_message(exc))
            return
        if card_ts:
            await self._outbox.update(clicker.channel, card_ts, *approval_card(record))
        command = inline_code(shown_command(join_argv(record.argv)))
        text = (
            f":leftwards_arrow_with_hook: You withdrew your request to run {command} on "
            f"{inline_code(record.target)}. Nothing ran."
        )
        await self._outbox.ephemeral(clicker, *notice(text))

    async def _refresh_card(
        self, approval_id: ApprovalId, principal: Principal, channel: str, ts: str
    ) -> None:
        """Show a card's current state (it may have been decided elsewhere, or expired)."""
        if not ts:
            return
        result = None
        try:
            record, result = await self._service.approval_result(approval_id, principal)
        except ApprovalNotFound:
            # The clicker may not read the outcome; the card shows the state alone.
            try:
                record = await self._service.get_approval(approval_id, principal)
            except ApprovalNotFound:
                return
        await self._outbox.update(channel, ts, *approval_card(record, result))
