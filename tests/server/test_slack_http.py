"""/slack/events in `execgate serve`: only requests signed by Slack, recently, get in."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from policies.errors import ConfigError
from server.settings import SecretRef, Settings, SlackSettings
from server.slack_http import slack_bot_config
from tests.bot.rig import Rig, rig, shared_rig, signed_headers

__all__ = ["rig", "shared_rig"]  # fixtures


async def test_request_with_a_bad_signature_gets_401_and_runs_nothing(rig: Rig) -> None:
    body, _ = rig.command_body("UALICE", f"{rig.instance} id")
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        **signed_headers(body, secret="not-the-signing-secret"),
    }
    response = await rig.http.post(rig.events_url, content=body, headers=headers)
    assert response.status_code == 401
    assert await rig.audit() == []
    assert rig.fake.calls == []
    await rig.audited_control()


async def test_request_with_a_stale_timestamp_gets_401_even_when_signed(rig: Rig) -> None:
    body, _ = rig.command_body("UALICE", f"{rig.instance} id")
    stale = int(time.time()) - 10 * 60
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        **signed_headers(body, timestamp=stale),
    }
    response = await rig.http.post(rig.events_url, content=body, headers=headers)
    assert response.status_code == 401
    assert await rig.audit() == []
    await rig.audited_control()


async def test_unsigned_request_gets_401(rig: Rig) -> None:
    body, _ = rig.command_body("UALICE", f"{rig.instance} id")
    response = await rig.http.post(
        rig.events_url, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 401


async def test_url_verification_challenge_is_answered(rig: Rig) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "t"}).encode()
    response = await rig.post(body, "application/json")
    assert response.status_code == 200
    assert response.json() == {"challenge": "c-123"}


def _settings(tmp_path: Path, **refs: SecretRef) -> Settings:
    return Settings(data_dir=tmp_path, slack=SlackSettings(**refs))


def _ref(tmp_path: Path, name: str, value: str) -> SecretRef:
    path = tmp_path / name
    path.write_text(value)
    return SecretRef(file=path)


def test_slack_is_not_mounted_when_it_is_not_configured(tmp_path: Path) -> None:
    unset = SecretRef()
    settings = _settings(tmp_path, signing_secret=unset, bot_token=unset, app_token=unset)
    assert slack_bot_config(settings, {}) is None
    assert slack_bot_config(settings, {}, socket_mode=True) is None


@pytest.mark.parametrize("socket_mode", [False, True], ids=["http", "socket-mode"])
def test_half_configured_slack_is_a_config_error(tmp_path: Path, socket_mode: bool) -> None:
    unset = SecretRef()
    settings = _settings(
        tmp_path,
        signing_secret=unset,
        app_token=unset,
        bot_token=_ref(tmp_path, "bot", "xoxb-1"),
    )
    with pytest.raises(ConfigError):
        slack_bot_config(settings, {}, socket_mode=socket_mode)


def test_bot_config_keeps_tokens_out_of_its_repr(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        signing_secret=_ref(tmp_path, "signing", "s3cr3t-signing"),
        bot_token=_ref(tmp_path, "bot", "xoxb-s3cr3t"),
    )
    config = slack_bot_config(settings, {})
    assert config is not None and config.signing_secret == "s3cr3t-signing"
    assert "s3cr3t" not in repr(config)
