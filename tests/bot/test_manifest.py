"""The Slack app manifest asks for what the bot uses, and points where ExecGate listens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bot.cards import APPROVE_ACTION
from server.settings import SlackSettings
from server.slack_http import EVENTS_PATH

MANIFEST = Path(__file__).resolve().parents[2] / "bot" / "manifest.yaml"

# Web API methods the bot calls, and the scope each needs.
NEEDED = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "users.info": "users:read",
    "usergroups.users.list": "usergroups:read",
    "files.getUploadURLExternal": "files:write",
}


def _manifest() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    return data


def test_manifest_scopes_cover_every_method_the_bot_calls() -> None:
    scopes = set(_manifest()["oauth_config"]["scopes"]["bot"])
    assert set(NEEDED.values()) | {"commands", "channels:history"} <= scopes


def test_manifest_command_and_urls_match_the_server() -> None:
    manifest = _manifest()
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == SlackSettings().command
    settings = manifest["settings"]
    urls = [
        command["url"],
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
    ]
    assert all(url.endswith(EVENTS_PATH) for url in urls)
    assert settings["interactivity"]["is_enabled"] is True
    assert "message.channels" in settings["event_subscriptions"]["bot_events"]
    assert APPROVE_ACTION  # buttons need interactivity, checked above
