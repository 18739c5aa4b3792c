"""Where ExecGate answers in Slack, and how it gets a message there.

A ``Place`` is where a request came from (channel, requester, thread, the slash
command's response URL). It travels with an approval request as its context, so the
result of an approved command lands where it was asked for. ``Outbox`` posts: Slack
API failures are logged and reported as a falsy return, never raised into a handler.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

logger = logging.getLogger(__name__)

Blocks = list[dict[str, Any]]
# What can go wrong talking to Slack: its API said no, the request could not be built,
# or the network failed.
_SLACK_FAILURES = (SlackApiError, SlackRequestError, ClientError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Place:
    """Where a request came from, and so where its answers go."""

    channel: str
    user: str
    thread_ts: str | None = None
    response_url: str | None = None

    def to_context(self) -> tuple[tuple[str, str], ...]:
        pairs = [("slack_channel", self.channel), ("slack_user", self.user)]
        if self.thread_ts:
            pairs.append(("slack_thread_ts", self.thread_ts))
        if self.response_url:
            pairs.append(("slack_response_url", self.response_url))
        return tuple(pairs)

    @classmethod
    def from_context(cls, context: Mapping[str, str]) -> Place | None:
        """The place a request stored, or None for requests from other surfaces."""
        channel = context.get("slack_channel")
        if not channel:
            return None
        return cls(
            channel=channel,
            user=context.get("slack_user", ""),
            thread_ts=context.get("slack_thread_ts") or None,
            response_url=context.get("slack_response_url") or None,
        )


class Outbox:
    """Posts to Slack through the Web API and response URLs."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def message(
        self, channel: str, text: str, blocks: Blocks, *, thread_ts: str | None = None
    ) -> str | None:
        """chat.postMessage; the new message's ts, or None when Slack refused."""
        try:
            response = await self.client.chat_postMessage(
                channel=channel, text=text, blocks=blocks, thread_ts=thread_ts, unfurl_links=False
            )
        except _SLACK_FAILURES:
            logger.warning("chat.postMessage failed", exc_info=True, extra={"channel": channel})
            return None
        ts = response.get("ts")
        return str(ts) if ts else None

    async def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> bool:
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        except _SLACK_FAILURES:
            logger.warning("chat.update failed", exc_info=True, extra={"channel": channel})
            return False
        return True

    async def ephemeral(self, place: Place, text: str, blocks: Blocks | None = None) -> bool:
        """Show a message to the requester only."""
        if place.response_url and not place.thread_ts:
            if await self._respond(place.response_url, "ephemeral", text, blocks):
                return True
        try:
            await self.client.chat_postEphemeral(
                channel=place.channel,
                user=place.user,
                text=text,
                blocks=blocks,
                thread_ts=place.thread_ts,
            )
        except _SLACK_FAILURES:
            logger.warning("chat.postEphemeral failed", exc_info=True)
            return False
        return True

    async def public(self, place: Place, text: str, blocks: Blocks) -> bool:
        """Post in the channel (or thread) the request came from.

        A thread is answered in the thread; a slash command through its response URL
        (which works where the bot is not a member), else chat.postMessage.
        """
        if place.thread_ts:
            if await self.message(place.channel, text, blocks, thread_ts=place.thread_ts):
                return True
        elif place.response_url:
            if await self._respond(place.response_url, "in_channel", text, blocks):
                return True
        return await self.message(place.channel, text, blocks) is not None

    async def upload(self, place: Place, *, filename: str, title: str, content: str) -> bool:
        """Attach a text file in the place's channel (and thread)."""
        try:
            await self.client.files_upload_v2(
                channel=place.channel,
                thread_ts=place.thread_ts,
                filename=filename,
                title=title,
                content=content.encode("utf-8"),
                snippet_type="text",
            )
        except _SLACK_FAILURES:
            logger.warning("file upload failed", exc_info=True, extra={"channel": place.channel})
            return False
        return True

    async def _respond(
        self, url: str, response_type: str, text: str, blocks: Blocks | None
    ) -> bool:
        try:
            response = await AsyncWebhookClient(url).send(
                text=text, blocks=blocks, response_type=response_type, replace_original=False
            )
        except _SLACK_FAILURES:
            logger.warning("response_url post failed", exc_info=True)
            return False
        if response.status_code != 200:
            # Response URLs expire after 30 minutes and 5 uses.
            logger.warning("response_url refused", extra={"status": response.status_code})
            return False
        return True
