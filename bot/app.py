"""The ExecGate Slack app: a slack-bolt ``AsyncApp`` whose listeners only translate.

Every listener acknowledges at once (Slack wants an answer within 3 seconds), drops a
delivery it has already seen (Slack retries), and leaves the work to a background task
that calls the ExecService and posts what came of it. The app runs behind HTTP
(``AsyncSlackRequestHandler``, see ``server.slack_http``) or Socket Mode alike.

    bot = SlackBot(service, BotConfig(bot_token=..., signing_secret=...), policy=holder.current)
    bot.app          # the AsyncApp to serve
    await bot.aclose()
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import commands
from bot.approvals import ApprovalDesk
from bot.cards import APPROVE_ACTION, DENY_ACTION
from bot.config import BotConfig
from bot.dedupe import RecentKeys, command_key, event_key
from bot.directory import Directory, policy_group_ids
from bot.outbox import Outbox, Place
from bot.render import (
    audit_message,
    error_message,
    explanation_message,
    help_message,
    instances_message,
    internal_error_message,
)
from bot.runner import Runner
from bot.tasks import TaskSet
from bot.text import escape, inline_code, shown_command
from bot.threads import ThreadSessions
from policies.errors import ExecGateError
from policies.rules.model import Policy
from policies.service.core import ExecService
from policies.types import Effect, ExecRequest, Principal, Surface

logger = logging.getLogger(__name__)

# Slack wants the ack within 3 s; the dry-run decision in it gets at most this long.
_ACK_DECISION_SECONDS = 1.0


class SlackBot:
    """ExecGate's Slack surface, built around one ExecService."""

    def __init__(
        self,
        service: ExecService,
        config: BotConfig,
        *,
        policy: Callable[[], Policy],
        client: AsyncWebClient | None = None,
    ) -> None:
        self.config = config
        self.service = service
        self._policy = policy
        self.client = client or AsyncWebClient(token=config.bot_token, base_url=config.api_base_url)
        self.outbox = Outbox(self.client)
        self.directory = Directory(
            self.client, lambda: policy_group_ids(policy()), ttl=config.directory_ttl
        )
        self.runner = Runner(service, self.outbox, config)
        self.approvals = ApprovalDesk(
            self.runner, self.outbox, self.directory, config.approvals_channel
        )
        self.threads = ThreadSessions(self.runner, self.outbox, self.directory)
        self.tasks = TaskSet()
        self._recent = RecentKeys()
        self.app = AsyncApp(
            client=self.client,
            signing_secret=config.signing_secret or "",
            request_verification_enabled=config.signing_secret is not None,
            # Listeners only ack and hand off, so answering after them is still at once,
            # and no listener outlives its request inside bolt.
            process_before_response=True,
            logger=logging.getLogger("execgate.slack.bolt"),
        )
        self.app.command(config.command)(self._on_command)
        self.app.action(APPROVE_ACTION)(self._on_approve)
        self.app.action(DENY_ACTION)(self._on_deny)
        self.app.event("message")(self._on_message)
        service.add_approval_listener(self.approvals.on_new_approval)

    async def aclose(self) -> None:
        """Let work in flight finish (bounded), then stop."""
        await self.tasks.aclose()
        await self.threads.aclose()

    # ------------------------------------------------------------------ listeners

    async def _on_command(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        key = command_key(command)
        if not self._recent.first_time(key):
            await ack()
            return
        user_id = str(command.get("user_id", ""))
        try:
            parsed = commands.parse(
                str(command.get("text", "")), user_id=user_id, now=dt.datetime.now(dt.UTC)
            )
        except ExecGateError as exc:
            text, blocks = error_message(exc)
            await ack(text=text, blocks=blocks, response_type="ephemeral")
            return
        if isinstance(parsed, commands.Help):
            text, blocks = help_message(collect=True)
            await ack(text=text, blocks=blocks, response_type="ephemeral")
            return
        await ack(text=await self._ack_text(parsed, user_id), response_type="ephemeral")
        place = Place(
            channel=str(command.get("channel_id", "")),
            user=user_id,
            response_url=command.get("response_url") or None,
        )
        self.tasks.spawn(self._handle(parsed, place, key), name=f"slack-command-{key}")

    async def _on_approve(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        if self._first_click(body):
            self.tasks.spawn(self.approvals.on_click(body, approve=True), name="slack-approve")

    async def _on_deny(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        if self._first_click(body):
            self.tasks.spawn(self.approvals.on_click(body, approve=False), name="slack-deny")

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        # Events are acknowledged by bolt itself. Only replies in threads can be commands;
        # on_message decides whether this one is (a person's, in a session's thread).
        if not event.get("thread_ts"):
            return
        key = event_key(body)
        if self._recent.first_time(key):
            self.tasks.spawn(self.threads.on_message(event, key), name=f"slack-message-{key}")

    async def _ack_text(self, parsed: commands.Command, user_id: str) -> str:
        """What will happen to the request, said at once: for a command, the decision
        it would get now (the dry run records nothing); the real one follows."""
        if isinstance(parsed, commands.Exec):
            shown = (
                f"{inline_code(shown_command(parsed.command))} on {inline_code(str(parsed.target))}"
            )
            try:
                async with asyncio.timeout(_ACK_DECISION_SECONDS):
                    principal = await self.directory.principal(user_id)
                    explanation = await self.service.explain(
                        ExecRequest(
                            principal, Surface.SLACK, parsed.target, command_text=parsed.command
                        )
                    )
            except (ExecGateError, TimeoutError):
                return f"Checking {shown} against the policy…"
            decision = explanation.decision
            if decision.effect is Effect.ALLOW:
                return f"Running {shown}…"
            if decision.effect is Effect.APPROVE:
                rule = f" (rule `{escape(decision.rule_id)}`)" if decision.rule_id else ""
                return f"{shown} needs approval{rule}; asking for it…"
            return f"{shown} is not allowed; the reason follows."
        if isinstance(parsed, commands.Explain):
            return f"Working out what would happen to {inline_code(shown_command(parsed.command))}…"
        if isinstance(parsed, commands.Session):
            return f"Opening a session on {inline_code(str(parsed.target))} in a thread…"
        if isinstance(parsed, commands.Audit):
            return "Searching the audit log…"
        if isinstance(parsed, commands.Instances):
            return f"Listing live instances of {inline_code(parsed.function)}…"
        if isinstance(parsed, commands.Collect):
            return (
                f"Asking to collect {inline_code(parsed.path)} "
                f"from {inline_code(str(parsed.target))}…"
            )
        return "Working on it…"

    def _first_click(self, body: Mapping[str, Any]) -> bool:
        trigger = body.get("trigger_id") or body.get("container", {}).get("message_ts")
        return self._recent.first_time(f"slack:action:{trigger}:{body.get('user', {}).get('id')}")

    # ------------------------------------------------------------------ after the ack

    async def _handle(self, parsed: commands.Command, place: Place, key: str) -> None:
        try:
            principal = await self.directory.principal(place.user)
            await self._dispatch(parsed, place, principal, key)
        except ExecGateError as exc:
            await self.runner.report_error(place, exc)
        except Exception:
            logger.exception("slack command failed")
            await self.outbox.ephemeral(place, *internal_error_message(None))

    async def _dispatch(
        self, parsed: commands.Command, place: Place, principal: Principal, key: str
    ) -> None:
        if isinstance(parsed, commands.Exec):
            request = ExecRequest(
                principal,
                Surface.SLACK,
                parsed.target,
                command_text=parsed.command,
                reason=parsed.reason,
                request_key=key,
                context=place.to_context(),
            )
            await self.runner.execute(place, request, command=parsed.command)
        elif isinstance(parsed, commands.Session):
            await self.threads.start(place, principal, parsed.target, parsed.reason)
        elif isinstance(parsed, commands.Explain):
            explanation = await self.service.explain(
                ExecRequest(principal, Surface.SLACK, parsed.target, command_text=parsed.command)
            )
            await self.outbox.ephemeral(
                place, *explanation_message(explanation, command=parsed.command)
            )
        elif isinstance(parsed, commands.Instances):
            found = await self.service.list_instances(
                principal, parsed.function, provider=parsed.provider, qualifier=parsed.qualifier
            )
            await self.outbox.ephemeral(place, *instances_message(parsed.function, found))
        elif isinstance(parsed, commands.Audit):
            flt = parsed.filter
            if parsed.user_name is not None:
                user_id = await self.directory.user_id_by_name(parsed.user_name)
                if user_id is None:
                    raise commands.usage(f"no Slack user is named @{parsed.user_name}")
                flt = dataclasses.replace(flt, principal=f"slack:{user_id}")
            search = await self.service.search_audit(principal, flt)
            await self.outbox.ephemeral(
                place, *audit_message(search.records, narrowed_to=search.narrowed_to)
            )
        elif isinstance(parsed, commands.Collect):
            await self.runner.collect(
                place, principal, parsed.target, parsed.path, parsed.reason, request_key=key
            )
