"""The Slack surface's HTTP mount at /slack/events: bolt's request handler behind
Starlette. Slash commands, button clicks and events all arrive here, signed by Slack."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.config import SLACK_API_URL, BotConfig
from policies.errors import ConfigError
from policies.service.core import ExecService
from server.mounts import Mounted
from server.settings import Settings

EVENTS_PATH = "/slack/events"


def slack_bot_config(
    settings: Settings, environ: Mapping[str, str], *, socket_mode: bool = False
) -> BotConfig | None:
    """The bot's configuration from settings; None when Slack is not configured at all.

    Raises: ConfigError when Slack is configured by half (a token without its pair).
    """
    slack = settings.slack
    bot_token = slack.bot_token.load(environ)
    signing = slack.signing_secret.load(environ)
    app_token = slack.app_token.load(environ)
    second, second_name = (app_token, "app token") if socket_mode else (signing, "signing secret")
    if bot_token is None and second is None:
        return None
    if bot_token is None or second is None:
        missing = "bot token" if bot_token is None else second_name
        raise ConfigError(
            f"Slack is configured without its {missing} (see the README's Slack section)"
        )
    return BotConfig(
        bot_token=bot_token.get_secret_value(),
        signing_secret=None if socket_mode or signing is None else signing.get_secret_value(),
        api_base_url=slack.api_base_url or SLACK_API_URL,
        approvals_channel=slack.approvals_channel,
        command=slack.command,
        inline_chars=settings.output.slack_inline_chars,
        directory_ttl=slack.directory_ttl_seconds,
        upload_full_output=slack.upload_full_output,
    )


def slack_mount(settings: Settings, service: ExecService) -> Mounted | None:
    """Routes for /slack/events; None when Slack is not configured.

    Raises: ConfigError when Slack is configured by half.
    """
    config = slack_bot_config(settings, os.environ)
    if config is None:
        return None
    # Bolt and the bot are loaded only for a server that has Slack: they are a sixth of
    # what `execgate serve` imports, and most servers answer MCP and the CLI alone.
    from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler

    from bot.app import SlackBot

    bot = SlackBot(service, config, policy=service.current_policy)
    handler = AsyncSlackRequestHandler(bot.app)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        try:
            yield
        finally:
            await bot.aclose()

    return Mounted(routes=[Route(EVENTS_PATH, events, methods=["POST"])], lifespan=lifespan)
