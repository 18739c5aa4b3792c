"""The artifact store named by ``settings.artifacts``: configuration enters here once."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from policies.artifacts import LocalConfig, OssConfig, S3Config, StoreConfig, build_store
from policies.errors import ConfigError
from policies.ports import ArtifactStore
from server.localstate import artifact_signing_key, read_address
from server.settings import SecretRef, Settings


def _secret(ref: SecretRef, environ: Mapping[str, str]) -> str | None:
    value = ref.load(environ)
    return value.get_secret_value() if value is not None else None


def link_base(settings: Settings, local_url: Callable[[], str] | None) -> Callable[[], str]:
    """Where local artifact links point: the public URL, else `execgate serve`'s address
    (known in-process to the server, read from the data directory by the CLI)."""
    public = settings.server.public_url
    if public:
        return lambda: public
    if local_url is not None:
        return local_url
    data_dir = settings.data_dir
    return lambda: str(read_address(data_dir)["url"])


def store_config(
    settings: Settings,
    *,
    local_url: Callable[[], str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> StoreConfig:
    """Raises: ConfigError (an S3/OSS store without a bucket or region, unreadable keys)."""
    env = os.environ if environ is None else environ
    cfg = settings.artifacts
    ttl = cfg.link_ttl_seconds
    if cfg.store == "local":
        configured = _secret(cfg.signing_key, env)
        key = configured.encode() if configured else artifact_signing_key(settings.data_dir)
        if len(key) < 16:
            raise ConfigError("artifacts.signing_key must be at least 16 characters")
        return LocalConfig(
            root=settings.artifact_dir,
            signing_key=key,
            base_url=link_base(settings, local_url),
            default_ttl=ttl,
        )
    if not cfg.bucket:
        raise ConfigError(f"artifacts.store = {cfg.store!r} needs artifacts.bucket")
    key_id = _secret(cfg.access_key_id, env)
    secret = _secret(cfg.access_key_secret, env)
    token = _secret(cfg.security_token, env)
    if cfg.store == "s3":
        return S3Config(
            bucket=cfg.bucket,
            region=cfg.region or None,
            endpoint_url=cfg.endpoint_url or None,
            access_key_id=key_id,
            secret_access_key=secret,
            session_token=token,
            addressing_style="path" if cfg.path_style else "auto",
            part_size=cfg.part_size_bytes,
            default_ttl=ttl,
        )
    if not cfg.region:
        raise ConfigError("artifacts.store = 'oss' needs artifacts.region, e.g. cn-hangzhou")
    return OssConfig(
        bucket=cfg.bucket,
        region=cfg.region,
        endpoint=cfg.endpoint_url or None,
        access_key_id=key_id,
        access_key_secret=secret,
        security_token=token,
        signature_version=cfg.oss_signature_version,
        path_style=cfg.path_style,
        part_size=cfg.part_size_bytes,
        default_ttl=ttl,
    )


def open_artifact_store(
    settings: Settings, *, local_url: Callable[[], str] | None = None
) -> ArtifactStore:
    """Raises: ConfigError, ArtifactError."""
    return build_store(store_config(settings, local_url=local_url))
