"""`execgate slack`: the Slack bot in Socket Mode (no public URL needed).

The bot opens a WebSocket to Slack (``apps.connections.open`` hands out its URL) and
receives the same slash commands, clicks and events the HTTP mount does. Commands run
through an ExecService of this process, which reaches instances like the CLI does (for
the embedded default, the local instance host of a running `execgate serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator

from slack_bolt.adapter.socket_mode.websockets import AsyncSocketModeHandler

from bot.app import SlackBot
from bot.config import BotConfig
from policies.errors import ConfigError
from policies.service.core import ExecService
from server.settings import Settings
from server.slack_http import slack_bot_config
from server.wiring import open_service, prepare_database


@contextlib.asynccontextmanager
async def socket_mode_bot(
    service: ExecService, config: BotConfig, app_token: str, settings: Settings
) -> AsyncIterator[SlackBot]:
    """A SlackBot connected over Socket Mode for the length of the block."""
    bot = SlackBot(service, config, policy=service.current_policy)
    handler = AsyncSocketModeHandler(bot.app, app_token, web_client=bot.client)
    try:
        await handler.connect_async()  # type: ignore[no-untyped-call]
        yield bot
    finally:
        client = handler.client
        loops = [client.message_receiver, client.current_session_monitor]
        # Stop receiving before the socket closes, or the receiver logs the close as an
        # error; close() then cancels the rest, and the loops are awaited until gone.
        for loop in loops:
            if loop is not None:
                loop.cancel()
        await handler.close_async()  # type: ignore[no-untyped-call]
        loops.append(client.message_processor)
        await asyncio.gather(*(f for f in loops if f is not None), return_exceptions=True)
        await bot.aclose()


def _app_token(settings: Settings) -> str:
    token = settings.slack.app_token.load(os.environ)
    if token is None:
        raise ConfigError(
            "Socket Mode needs an app-level token (xapp-…): set EXECGATE_SLACK_APP_TOKEN "
            "or slack.app_token in the config"
        )
    return token.get_secret_value()


async def _main(settings: Settings) -> None:
    config = slack_bot_config(settings, os.environ, socket_mode=True)
    if config is None:
        raise ConfigError(
            "Slack is not configured: set EXECGATE_SLACK_BOT_TOKEN and EXECGATE_SLACK_APP_TOKEN"
        )
    app_token = _app_token(settings)
    await prepare_database(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_service(settings) as service:
        async with socket_mode_bot(service, config, app_token, settings):
            print("ExecGate's Slack bot is connected (Socket Mode); Ctrl-C stops it", flush=True)
            await stop.wait()


def run_socket_mode(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM. Raises: ConfigError when Slack is not configured."""
    asyncio.run(_main(settings))
    print("ExecGate's Slack bot stopped", file=sys.stderr)
    return 0
