"""Configuration enters once: file, environment overrides, masked secrets, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from policies.errors import ConfigError
from server.settings import SecretRef, Settings, load_settings, masked_view


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
    assert isinstance(loaded, SecretStr)
    assert "s3cr3t" not in repr(loaded)
    assert loaded.get_secret_value() == "s3cr3t-from-file"


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


def test_environment_addresses_nested_keys_with_double_underscores(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "EXECGATE_DATA_DIR": str(tmp_path),
            "EXECGATE_SERVER__PUBLIC_URL": "https://execgate.example",
            "EXECGATE_SLACK__UPLOAD_FULL_OUTPUT": "false",
            "EXECGATE_LOCAL_HOST__ACCOUNT_ID": "1234567890",
            "EXECGATE_DEFAULT_PROVIDER": "prod",
            "EXECGATE_PROVIDERS__PROD__TYPE": "fc",
            "EXECGATE_PROVIDERS__PROD__REGION": "cn-hangzhou",
            "EXECGATE_SLACK__BOT_TOKEN__FILE": str(tmp_path / "bot"),
            "EXECGATE_MCP__TOKENS": '[{"client": "ci", "sha256": "' + "ab" * 32 + '"}]',
        }
    )
    assert settings.data_dir == tmp_path
    assert settings.server.public_url == "https://execgate.example"
    assert settings.slack.upload_full_output is False
    assert settings.local_host.account_id == "1234567890"
    assert settings.providers["prod"].region == "cn-hangzhou"
    # As in the file, a [providers] table replaces the default one.
    assert set(settings.providers) == {"prod"}
    assert settings.slack.bot_token.file == tmp_path / "bot"
    assert settings.slack.bot_token.env is None  # as in the file: the ref is replaced whole
    assert [t.client for t in settings.mcp.tokens] == ["ci"]


def test_environment_names_that_are_not_settings_are_left_alone(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "EXECGATE_DATA_DIR": str(tmp_path),
            "EXECGATE_SLACK_BOT_TOKEN": "xoxb-1-2-3",
            "EXECGATE_TEST_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1/test",
            "EXECGATE_SOURCE": "forged",
        }
    )
    assert settings.data_dir == tmp_path
    assert settings.source == "defaults"
    assert settings.database.url == ""


@pytest.mark.parametrize(
    ("environ", "where"),
    [
        pytest.param({"EXECGATE_SERVER__PORT": "eighty"}, "server.port", id="bad-type"),
        pytest.param({"EXECGATE_SERVER__PORTT": "1"}, "server.portt", id="unknown-key"),
        pytest.param({"EXECGATE_MCP__TOKENS": "[not json"}, "mcp", id="bad-json"),
    ],
)
def test_a_bad_environment_override_is_refused_with_its_key(
    tmp_path: Path, environ: dict[str, str], where: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"EXECGATE_DATA_DIR": str(tmp_path), **environ})
    assert where in info.value.safe_message


@pytest.mark.parametrize(
    ("file_port", "env", "port"),
    [
        pytest.param(None, {}, 8765, id="default"),
        pytest.param(9000, {}, 9000, id="file-over-default"),
        pytest.param(9000, {"EXECGATE_SERVER__PORT": "9100"}, 9100, id="env-over-file"),
        pytest.param(None, {"EXECGATE_SERVER__PORT": "9100"}, 9100, id="env-over-default"),
    ],
)
def test_precedence_is_defaults_then_file_then_environment(
    tmp_path: Path, file_port: int | None, env: dict[str, str], port: int
) -> None:
    config = tmp_path / "execgate.toml"
    config.write_text(
        '[server]\nhost = "0.0.0.0"\n' + (f"port = {file_port}\n" if file_port else "")
    )
    settings = load_settings(config, environ=env)
    assert settings.server.port == port
    # A nested table merges key by key: the file's other keys in [server] survive.
    assert settings.server.host == "0.0.0.0"


def test_the_config_file_comes_from_the_flag_then_the_environment_then_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "execgate.toml").write_text("[server]\nport = 1001\n")
    named = tmp_path / "named.toml"
    named.write_text("[server]\nport = 1002\n")
    flagged = tmp_path / "flagged.toml"
    flagged.write_text("[server]\nport = 1003\n")
    assert load_settings(environ={}).server.port == 1001
    assert load_settings(environ={"EXECGATE_CONFIG": str(named)}).server.port == 1002
    assert load_settings(flagged, environ={"EXECGATE_CONFIG": str(named)}).server.port == 1003


def test_a_missing_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "absent.toml", environ={})
    assert "absent.toml" in info.value.safe_message


def test_settings_built_in_code_read_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECGATE_SERVER__PORT", "9100")
    assert load_settings().server.port == 9100
    assert Settings().server.port == 8765


def test_a_secret_ref_resolves_from_the_environment_before_the_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text("from-file\n")
    ref = SecretRef(env="MY_KEY", file=secret_file)
    from_env = ref.load({"MY_KEY": "from-env"})
    from_file = ref.load({})
    assert isinstance(from_env, SecretStr) and isinstance(from_file, SecretStr)
    assert from_env.get_secret_value() == "from-env"
    assert from_file.get_secret_value() == "from-file"
    assert SecretRef(env="MY_KEY").load({}) is None
    with pytest.raises(ConfigError):
        SecretRef(file=tmp_path / "absent").load({})


def test_no_secret_is_printed_by_repr_str_or_config_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.cli.main import main

    key_file = tmp_path / "signing"
    key_file.write_text("s3cr3t-from-file")
    config = tmp_path / "execgate.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        f'[slack]\nsigning_secret = {{ file = "{key_file}" }}\n'
        '[database]\nurl = "postgresql+asyncpg://execgate:hunter2@db/audit"\n'
        "[[local_host.functions]]\n"
        'name = "api"\nenv = { DB_PASSWORD = "pw-in-function-env" }\n'
    )
    monkeypatch.setenv("EXECGATE_CONFIG", str(config))
    monkeypatch.setenv("EXECGATE_SLACK_BOT_TOKEN", "xoxb-123-456-abcdef")
    monkeypatch.setenv("EXECGATE_SLACK__APPROVALS_CHANNEL", "C0123")
    secrets = ("s3cr3t-from-file", "hunter2", "xoxb-123-456-abcdef", "pw-in-function-env")

    settings = load_settings()
    token = settings.slack.bot_token.load({"EXECGATE_SLACK_BOT_TOKEN": "xoxb-123-456-abcdef"})
    assert token is not None and token.get_secret_value() == "xoxb-123-456-abcdef"
    assert main(["config", "show"]) == 0
    shown = capsys.readouterr().out
    # The dump is the effective configuration: the positive facts are in it.
    view = json.loads(shown)
    assert view["slack"]["approvals_channel"] == "C0123"
    assert view["slack"]["bot_token"]["value"] == "********"
    assert view["database"]["url"].startswith("postgresql+asyncpg://execgate:")
    assert list(view["local_host"]["functions"][0]["env"]) == ["DB_PASSWORD"]
    for text in (shown, repr(settings), str(settings), repr(token), str(token)):
        for secret in secrets:
            assert secret not in text


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql+asyncpg://execgate:hunter2@db/audit", id="password"),
        pytest.param("postgresql+asyncpg://execgate:hun%40ter2@db/audit", id="quoted-password"),
        pytest.param("postgresql+asyncpg://execgate@db/audit?password=hunter2", id="query"),
        pytest.param("postgresql+asyncpg//execgate:hunter2@db", id="malformed"),
    ],
)
def test_config_show_masks_a_database_password_wherever_the_url_holds_it(
    tmp_path: Path, url: str
) -> None:
    settings = load_settings(
        environ={"EXECGATE_DATA_DIR": str(tmp_path), "EXECGATE_DATABASE_URL": url}
    )
    assert settings.database.url == url
    text = json.dumps(masked_view(settings, {}))
    assert "hunter2" not in text and "hun%40ter2" not in text
