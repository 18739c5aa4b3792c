"""`execgate slack`: the bot over Socket Mode, against a local Socket Mode server."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.server import ServerConnection, serve

from policies.errors import ConfigError
from policies.ports import AuditFilter
from server.serve import running_server
from server.settings import SecretRef, Settings, SlackSettings
from server.slack_http import slack_bot_config
from server.slack_socket import run_socket_mode, socket_mode_bot
from tests.bot.fake_slack import FakeSlack
from tests.bot.rig import WAR_ROOM, fake_slack, slack_settings

__all__ = ["fake_slack"]  # fixture


async def test_socket_mode_handles_a_slash_command(
    tmp_path: Path, database_url: str, fake_slack: FakeSlack
) -> None:
    connections: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def socket_mode_server(connection: ServerConnection) -> None:
        await connection.send(json.dumps({"type": "hello", "num_connections": 1}))
        await connections.put(connection)
        await connection.wait_closed()

    settings = slack_settings(tmp_path, database_url, fake_slack)
    async with serve(socket_mode_server, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        fake_slack.ws_url = f"ws://127.0.0.1:{port}/link/?ticket=t-1"
        async with running_server(settings, port=0) as running:
            instance = running.manager.list("demo-api")[0].instance_id
            config = slack_bot_config(settings, os.environ, socket_mode=True)
            assert config is not None and config.signing_secret is None
            async with socket_mode_bot(running.service, config, "xapp-test", settings):
                with anyio.fail_after(30):
                    connection = await connections.get()
                envelope = {
                    "envelope_id": "env-1",
                    "type": "slash_commands",
                    "accepts_response_payload": True,
                    "payload": {
                        "team_id": "T0FAKE",
                        "channel_id": WAR_ROOM,
                        "user_id": "UALICE",
                        "command": "/exec",
                        "text": f"demo-api/{instance} id",
                        "response_url": fake_slack.response_url("socket-1"),
                        "trigger_id": "socket-trigger-1",
                    },
                }
                await connection.send(json.dumps(envelope))
                with anyio.fail_after(30):
                    ack = json.loads(await connection.recv())
                assert ack["envelope_id"] == "env-1"
                assert ack["payload"]["response_type"] == "ephemeral"
                result = await fake_slack.wait_call(
                    "response_url",
                    lambda c: (
                        c.data.get("_name") == "socket-1"
                        and c.data.get("response_type") == "in_channel"
                    ),
                )
                assert "uid=" in result.rendered
            records = await running.service.audit_list(AuditFilter())
    assert [r.intent.principal for r in records] == ["slack:UALICE"]
    assert fake_slack.of("apps.connections.open")[0].token == "xapp-test"


def test_execgate_slack_without_tokens_is_a_config_error(tmp_path: Path) -> None:
    unset = SecretRef()
    settings = Settings(
        data_dir=tmp_path,
        slack=SlackSettings(signing_secret=unset, bot_token=unset, app_token=unset),
    )
    with pytest.raises(ConfigError):
        run_socket_mode(settings)
