"""settings.artifacts -> the store configuration: keys, buckets, credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.artifacts import LocalConfig, OssConfig, S3Config
from policies.errors import ConfigError
from server.artifact_store import store_config
from server.localstate import ARTIFACT_KEY_FILE, write_address
from server.settings import load_settings


def test_local_store_generates_one_signing_key_shared_by_every_process(tmp_path: Path) -> None:
    settings = load_settings(None, {"EXECGATE_DATA_DIR": str(tmp_path)})
    first = store_config(settings, environ={})
    second = store_config(settings, environ={})
    assert isinstance(first, LocalConfig) and isinstance(second, LocalConfig)
    assert first.signing_key == second.signing_key and len(first.signing_key) >= 32
    assert (tmp_path / ARTIFACT_KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert first.root == tmp_path / "artifacts"


def test_local_links_point_at_the_running_server_unless_a_public_url_is_set(
    tmp_path: Path,
) -> None:
    settings = load_settings(None, {"EXECGATE_DATA_DIR": str(tmp_path)})
    write_address(tmp_path, "http://127.0.0.1:4567", "1")
    config = store_config(settings, environ={})
    assert isinstance(config, LocalConfig) and config.base_url() == "http://127.0.0.1:4567"
    public = load_settings(
        None,
        {"EXECGATE_DATA_DIR": str(tmp_path), "EXECGATE_SERVER__PUBLIC_URL": "https://eg.example"},
    )
    config = store_config(public, environ={})
    assert isinstance(config, LocalConfig) and config.base_url() == "https://eg.example"


def test_a_configured_signing_key_is_used(tmp_path: Path) -> None:
    settings = load_settings(None, {"EXECGATE_DATA_DIR": str(tmp_path)})
    config = store_config(settings, environ={"EXECGATE_ARTIFACT_SIGNING_KEY": "z" * 40})
    assert isinstance(config, LocalConfig) and config.signing_key == b"z" * 40
    with pytest.raises(ConfigError):
        store_config(settings, environ={"EXECGATE_ARTIFACT_SIGNING_KEY": "short"})


def test_s3_store_reads_bucket_endpoint_and_keys_from_refs(tmp_path: Path) -> None:
    toml = (
        '[artifacts]\nstore = "s3"\nbucket = "eg-artifacts"\nregion = "us-east-1"\n'
        'endpoint_url = "http://127.0.0.1:9000"\npath_style = true\nprefix = "execgate/"\n'
        'access_key_id = { env = "MY_KEY_ID" }\naccess_key_secret = { env = "MY_SECRET" }\n'
    )
    settings = load_settings(_write(tmp_path, toml), {})
    config = store_config(settings, environ={"MY_KEY_ID": "AKIA1", "MY_SECRET": "s3cr3t"})
    assert isinstance(config, S3Config)
    assert (config.bucket, config.endpoint_url, config.addressing_style) == (
        "eg-artifacts",
        "http://127.0.0.1:9000",
        "path",
    )
    assert (config.access_key_id, config.secret_access_key) == ("AKIA1", "s3cr3t")
    assert "s3cr3t" not in repr(config)


def test_oss_store_defaults_to_the_sdk_credentials_chain(tmp_path: Path) -> None:
    toml = '[artifacts]\nstore = "oss"\nbucket = "eg"\nregion = "cn-hangzhou"\n'
    config = store_config(load_settings(_write(tmp_path, toml), {}), environ={})
    assert isinstance(config, OssConfig)
    assert (config.region, config.access_key_id, config.signature_version) == (
        "cn-hangzhou",
        None,
        "v4",
    )


@pytest.mark.parametrize(
    "toml",
    [
        pytest.param('[artifacts]\nstore = "s3"\n', id="s3-without-bucket"),
        pytest.param('[artifacts]\nstore = "oss"\nbucket = "b"\n', id="oss-without-region"),
    ],
)
def test_bucket_stores_need_their_bucket_and_region(tmp_path: Path, toml: str) -> None:
    with pytest.raises(ConfigError):
        store_config(load_settings(_write(tmp_path, toml), {}), environ={})


def _write(tmp_path: Path, toml: str) -> Path:
    config = tmp_path / "execgate.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n' + toml)
    return config
