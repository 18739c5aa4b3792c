"""Configuration enters once: file, environment overrides, masked secrets, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policies.errors import ConfigError
from server.settings import Secret, load_settings, masked_view


def test_embedded_defaults_need_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.source == "defaults"
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.default_provider == "local"
    assert [f.name for f in settings.local_host.functions] == ["demo-api", "demo-worker"]


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config = tmp_path / "execgate.toml"
    config.write_text('[server]\nport = 9000\n[database]\nurl = "sqlite+aiosqlite:///x.db"\n')
    settings = load_settings(
        config,
        environ={
            "EXECGATE_SERVER__PORT": "9100",
            "EXECGATE_DATABASE_URL": "postgresql+asyncpg://u:pw@db/x",
            "EXECGATE_CLI__PRINCIPAL": "local:bob",
        },
    )
    assert settings.server.port == 9100
    assert settings.database.url == "postgresql+asyncpg://u:pw@db/x"
    assert settings.cli.principal == "local:bob"
    assert settings.source == str(config)


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    secret_file = tmp_path / "signing"
    secret_file.write_text("s3cr3t-from-file")
    config = tmp_path / "execgate.toml"
    config.write_text(
        f'[slack]\nsigning_secret = {{ file = "{secret_file}" }}\n'
        '[database]\nurl = "postgresql+asyncpg://execgate:hunter2@db/audit"\n'
    )
    environ = {"EXECGATE_SLACK_BOT_TOKEN": "xoxb-123-456-abcdef"}
    settings = load_settings(config, environ=environ)
    text = json.dumps(masked_view(settings, environ))
    for secret in ("s3cr3t-from-file", "hunter2", "xoxb-123-456-abcdef", "dEmOsEcReT"):
        assert secret not in text
    view = masked_view(settings, environ)
    assert view["slack"]["signing_secret"]["value"] == "********"
    assert view["slack"]["bot_token"]["value"] == "********"
    assert view["slack"]["app_token"]["value"] is None
    loaded = settings.slack.signing_secret.load(environ)
    assert isinstance(loaded, Secret)
    assert "s3cr3t" not in repr(loaded)
    assert loaded.reveal() == "s3cr3t-from-file"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        pytest.param("[server]\nport = 'eighty'\n", "server.port", id="bad-type"),
        pytest.param("[server]\nportt = 1\n", "server.portt", id="unknown-key"),
        pytest.param("default_provider = 'nope'\n", "default_provider", id="unknown-provider"),
        pytest.param("[server\n", "not valid TOML", id="bad-toml"),
    ],
)
def test_a_bad_config_file_is_refused_with_where_and_why(
    tmp_path: Path, text: str, where: str
) -> None:
    config = tmp_path / "execgate.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    assert where in info.value.safe_message


def test_the_cli_principal_is_the_effective_os_user_not_an_env_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os
    import pwd

    from server.cli.principal import cli_principal

    monkeypatch.setenv("USER", "mallory")
    monkeypatch.setenv("LOGNAME", "mallory")
    settings = load_settings(environ={"EXECGATE_DATA_DIR": str(tmp_path)})
    assert cli_principal(settings).id == pwd.getpwuid(os.geteuid()).pw_name


def test_only_root_may_act_as_another_local_user(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os

    from server.cli.principal import cli_principal

    settings = load_settings(environ={"EXECGATE_CLI__PRINCIPAL": "local:bob"})
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert str(cli_principal(settings)) == "local:bob"
    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    with pytest.raises(ConfigError):
        cli_principal(settings)
    slack = load_settings(environ={"EXECGATE_CLI__PRINCIPAL": "slack:U123"})
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(ConfigError):
        cli_principal(slack)
